#!/bin/sh
# Runs one Kafka main class on the image's jars. The Maven artifacts carry no distribution
# scripts, so these thin wrappers stand in for the ones the charts call.
#   KAFKA_HEAP_OPTS  JVM heap flags (default: small, for the command-line tools)
#   KAFKA_OPTS       any other JVM flags
set -eu
# shellcheck disable=SC2086 # the *_OPTS variables are word lists on purpose
exec java ${KAFKA_HEAP_OPTS:--Xms64m -Xmx256m} -XX:+UseG1GC -Djava.awt.headless=true \
  -Dorg.slf4j.simpleLogger.defaultLogLevel="${KAFKA_LOG_LEVEL:-info}" ${KAFKA_OPTS:-} \
  -cp '/opt/kafka/libs/*' "$@"
