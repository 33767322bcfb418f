"""The Dataset service: servicer, wire conversion, config, snapshots, and the
glue that builds the indexer's Datasets for the gateway and its workers."""
