"""Dataset layer: readers of the published formats, the feature store, the simulated benchmark."""
