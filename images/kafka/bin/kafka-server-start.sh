#!/bin/sh
# kafka-server-start.sh <server.properties>: the broker (and KRaft controller) in the foreground.
set -eu
[ $# -ge 1 ] || { echo "usage: kafka-server-start.sh <server.properties>" >&2; exit 2; }
export KAFKA_HEAP_OPTS="${KAFKA_HEAP_OPTS:--Xms512m -Xmx1g}"
exec /opt/kafka/bin/kafka-run-class.sh kafka.Kafka "$@"
