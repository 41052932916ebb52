"""Local fakes of remote services; every one listens on 127.0.0.1 only."""
