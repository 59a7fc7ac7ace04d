SELECT sequence FROM {schema}.relays WHERE source = $1
