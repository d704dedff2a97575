"""Jobs: what clients ask for, stored before its task is published, with the state workers report."""
