"""The privacy commissioner's audit: explore, detect, export, verify, witness."""
