"""bookingsync: one canonical picture of meetings booked across scheduling providers."""
