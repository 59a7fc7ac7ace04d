DELETE FROM {schema}.commands WHERE command_id = ANY($1::text[])
