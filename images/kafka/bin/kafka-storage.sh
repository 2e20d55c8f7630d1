#!/bin/sh
# kafka-storage.sh format|info|random-uuid ...: KRaft storage tool.
exec /opt/kafka/bin/kafka-run-class.sh kafka.tools.StorageTool "$@"
