"""``retail-coordinator demo``: the whole federation on real processes, on one machine.

A coordinator daemon, synthetic retailers enrolled and joined as headless nodes through the same
node runtime the desktop app uses, one campaign with DP-SGD and SecAgg+ over TLS with SuperNode
authentication, then every node's insights. Modules: :mod:`.children` (child processes that
never outlive the demo), :mod:`.steps` (the federation's life, step by step), :mod:`.summary`
(what the demo reports).
"""

from coordinator.demo.children import interrupt_on_signals
from coordinator.demo.steps import DemoError, DemoOptions, run_demo

__all__ = ["DemoError", "DemoOptions", "interrupt_on_signals", "run_demo"]
