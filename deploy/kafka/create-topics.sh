#!/bin/sh
# Create intentflow's source topics on Apache Kafka with their declared partitions.
#
# TOPICS: space-separated NAME:PARTITIONS, as declared in schemas/topics.py
# (tests/unit/test_compose.py keeps docker-compose.yml's list equal to it).
# BOOTSTRAP: host:port of a broker. REPLICATION_FACTOR: default 1 (one broker).
#
# Existing topics are left alone, but one whose partition count differs from
# the declaration is an error: Faust tables need every user-keyed topic
# co-partitioned, so a mismatch must stop the stack, not be papered over.
set -eu

BIN=${KAFKA_BIN:-/opt/kafka/bin}
: "${TOPICS:?TOPICS is required (NAME:PARTITIONS ...)}"
: "${BOOTSTRAP:?BOOTSTRAP is required (host:port)}"
REPLICATION_FACTOR=${REPLICATION_FACTOR:-1}

status=0
for spec in $TOPICS; do
    name=${spec%%:*}
    partitions=${spec##*:}
    "$BIN/kafka-topics.sh" --bootstrap-server "$BOOTSTRAP" --create --if-not-exists \
        --topic "$name" --partitions "$partitions" \
        --replication-factor "$REPLICATION_FACTOR"
    actual=$("$BIN/kafka-topics.sh" --bootstrap-server "$BOOTSTRAP" --describe --topic "$name" \
        | grep -c "Partition: ")
    if [ "$actual" -ne "$partitions" ]; then
        echo "topic $name has $actual partitions, declared $partitions" >&2
        status=1
    else
        echo "topic $name: $actual partitions"
    fi
done
exit $status
