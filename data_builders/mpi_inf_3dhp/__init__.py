"""MPI-INF-3DHP: multi-view training sequences with their foreground masks, single-view test set."""
