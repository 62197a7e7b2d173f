"""emrops custom checkov checks (loaded with --external-checks-dir)."""
