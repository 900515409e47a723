"""Reading and writing lgdiff files (ensembles of configurations)."""
