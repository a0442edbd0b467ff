"""Media plumbing: zero-transcode relay of encoded WebRTC frames, SDP checks, synthetic sources."""
