"""What the product does only because of the embedded broker (Tansu 0.6), kept here so it can go.

- gapless.py: Tansu can show a later offset of a partition before an earlier one (concurrent produces) and call
  offset 1 a fresh partition's earliest; every consumer refetches such holes. On Apache Kafka offsets are
  readable in order, so a fetch never has a hole and Gapless only ever passes records through.
- no_auto_create.py: metadata requests that never create topics. Tansu auto-creates on every metadata request;
  a Kafka cluster run with `auto.create.topics.enable=false` (as docker-compose.yml does) makes the patch
  unnecessary, though harmless.
- Wave topics (services/snapshotter/waves.py, olvm_backup/kafka/leased.py): chunks travel in one topic per
  wave, deleted once stored, because Tansu's memory engine frees bytes only when their topic is deleted and
  implements neither retention nor DeleteRecords. On Kafka, retention would bound the chunks too, so one chunk
  topic with a short `retention.ms` could replace the wave topics and the leases.
"""
