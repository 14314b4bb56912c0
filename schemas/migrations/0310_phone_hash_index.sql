-- Every inbound message (a reply, a STOP) finds the users of its phone by the phone's
-- keyed hash (api/privacy/store.py, users_by_phone), which is not in pii_phones' key:
-- without an index that is a read of every stored phone, per message. A bloom filter
-- over the hashes lets the read skip the granules that cannot hold the hash; the
-- query keeps FINAL (the newest phone per user) and uses the index through it.
ALTER TABLE pii_phones ADD INDEX IF NOT EXISTS phone_hash_bloom phone_hash TYPE bloom_filter(0.001) GRANULARITY 1;

-- The phones stored before the index existed.
ALTER TABLE pii_phones MATERIALIZE INDEX phone_hash_bloom SETTINGS mutations_sync = 2;
