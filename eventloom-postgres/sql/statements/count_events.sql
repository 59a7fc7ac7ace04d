-- Every stored event, counted.
SELECT count(*) FROM {schema}.events
