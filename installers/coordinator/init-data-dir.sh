#!/bin/sh
# Initialise a coordinator data directory for a server install and set where it listens.
#
#   init-data-dir.sh DATA_DIR [API_HOST [API_PORT [SUPERLINK_HOST [SUPERLINK_PORT]]]]
#
# Defaults: API on 0.0.0.0:8080, SuperLink on 127.0.0.1:9092 (the ports the Dockerfile EXPOSEs).
# The SuperLink stays on loopback by default: its certificate names only 127.0.0.1 and
# localhost, and its port also serves Flower's Control API (see installers/README.md).
# `retail-coordinator init` alone binds both to 127.0.0.1 on a free port chosen at every start,
# which suits one machine, not a server retailers reach; this sets fixed addresses in
# DATA_DIR/coordinator.toml afterwards. Prints init's output (CA fingerprint, admin tokens).
# RETAIL_COORDINATOR names the executable (default: retail-coordinator on PATH).
set -eu

if [ "$#" -lt 1 ] || [ "$#" -gt 5 ]; then
    echo "usage: $0 DATA_DIR [API_HOST [API_PORT [SUPERLINK_HOST [SUPERLINK_PORT]]]]" >&2
    exit 2
fi
data_dir=$1
api_host=${2:-0.0.0.0}
api_port=${3:-8080}
superlink_host=${4:-127.0.0.1}
superlink_port=${5:-9092}
coordinator=${RETAIL_COORDINATOR:-retail-coordinator}

for port in "$api_port" "$superlink_port"; do
    case $port in
        '' | *[!0-9]*) echo "not a port number: '$port'" >&2; exit 2 ;;
    esac
    if [ "$port" -lt 1 ] || [ "$port" -gt 65535 ]; then
        echo "port out of range 1..65535: $port" >&2; exit 2
    fi
done
for host in "$api_host" "$superlink_host"; do
    case $host in
        '' | *[!A-Za-z0-9.:-]*) echo "not a host name or address: '$host'" >&2; exit 2 ;;
    esac
done

"$coordinator" init --data-dir "$data_dir"

config="$data_dir/coordinator.toml"
# init writes one `key = value` line per setting (coordinator.config.dumps).
sed -i \
    -e "s/^api_host = .*/api_host = \"$api_host\"/" \
    -e "s/^api_port = .*/api_port = $api_port/" \
    -e "s/^superlink_host = .*/superlink_host = \"$superlink_host\"/" \
    -e "s/^superlink_port = .*/superlink_port = $superlink_port/" \
    "$config"
for line in "api_host = \"$api_host\"" "api_port = $api_port" \
    "superlink_host = \"$superlink_host\"" "superlink_port = $superlink_port"; do
    if ! grep -qx "$line" "$config"; then
        echo "could not set '$line' in $config: edit it by hand" >&2
        exit 1
    fi
done
echo "Listening addresses set in $config: API $api_host:$api_port, SuperLink $superlink_host:$superlink_port"
