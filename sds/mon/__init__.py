"""Monitor daemon: cluster maps replicated with Paxos."""
