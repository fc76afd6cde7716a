"""Running the Traffic Center: the mTLS listener, the ops listener, workers and signals."""
