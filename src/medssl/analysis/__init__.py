"""From embeddings to phenotypes: maps, subgroups, trait recovery."""
