#!/bin/sh
# The image's default command: one broker+controller on 127.0.0.1 with its data under /tmp, for
# smoke tests and a quick local broker. The chart does not use it (it renders its own config).
set -eu
data="${KAFKA_DATA_DIR:-/tmp/kafka-data}"
mkdir -p "$data"
config="$data/server.properties"
sed "s#@DATA@#$data#" /opt/kafka/config/standalone.properties > "$config"
/opt/kafka/bin/kafka-storage.sh format --config "$config" \
  --cluster-id "${KAFKA_CLUSTER_ID:-cWZyYW1lLXN0YW5kYWxvbg}" --ignore-formatted
exec /opt/kafka/bin/kafka-server-start.sh "$config"
