SELECT status, actual, first_version, last_version, transaction_id, sequence FROM {schema}.append($1, $2, $3, $4, $5, $6, $7, $8, $9, timestamptz 'epoch' + $10::int8 * interval '1 microsecond', $11)
