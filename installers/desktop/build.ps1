# Build the one-folder desktop bundle on Windows (the Windows twin of build.sh; untested in CI).
#
#   powershell -ExecutionPolicy Bypass -File installers\desktop\build.ps1 [-BuildRoot DIR]
#
# Needs the project and the `installer` extra in .venv (or $env:PYTHON):
#   py -3.11 -m venv .venv
#   .venv\Scripts\python -m pip install --index-url https://download.pytorch.org/whl/cpu torch==2.13.0
#   .venv\Scripts\python -m pip install -e ".[installer]"
# The app is BuildRoot\dist\retail-desktop\retail-desktop.exe; never commit BuildRoot.
param([string]$BuildRoot = "")

$ErrorActionPreference = "Stop"
$here = Split-Path -Parent $MyInvocation.MyCommand.Path
$repo = Resolve-Path (Join-Path $here "..\..")
if (-not $BuildRoot) { $BuildRoot = Join-Path $repo "build\installer" }
$python = $env:PYTHON
if (-not $python) { $python = Join-Path $repo ".venv\Scripts\python.exe" }

& $python -c "import PyInstaller"
if ($LASTEXITCODE -ne 0) {
    Write-Error "PyInstaller is not installed for ${python}: run  $python -m pip install -e `"$repo[installer]`""
    exit 2
}

New-Item -ItemType Directory -Force -Path $BuildRoot | Out-Null
$watch = [Diagnostics.Stopwatch]::StartNew()
& $python -m PyInstaller --noconfirm --clean `
    --workpath (Join-Path $BuildRoot "work") `
    --distpath (Join-Path $BuildRoot "dist") `
    (Join-Path $here "retail-desktop.spec")
if ($LASTEXITCODE -ne 0) { exit $LASTEXITCODE }
$app = Join-Path $BuildRoot "dist\retail-desktop"
$size = (Get-ChildItem -Recurse -File $app | Measure-Object -Sum Length).Sum / 1MB
Write-Output ("built {0} in {1:N0} s, {2:N0} MB" -f $app, $watch.Elapsed.TotalSeconds, $size)
