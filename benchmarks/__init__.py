"""What the lock costs, side by side with the floor and its peers, in one run."""
