SELECT category, stream_id, first_version, last_version, transaction_id::text, sequence, fingerprint, refusal FROM {schema}.commands WHERE command_id = $1
