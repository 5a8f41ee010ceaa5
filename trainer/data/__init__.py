"""The data stage: audio sources (Speech Commands, own recordings, synthetic speech) and curation."""
