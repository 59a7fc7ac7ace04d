SELECT status, actual, first_version, last_version, transaction_id, sequence FROM {schema}.append_relayed($1, $2, $3, $4, $5, $6, $7, $8)
