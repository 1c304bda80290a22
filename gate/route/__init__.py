"""Route: forward passing SEGs, send SRs for failing ones, through a durable outbox."""
