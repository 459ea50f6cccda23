"""Media: how cameras are encoded (codec), decoded (decode) and resized (frames, the one resize)."""
