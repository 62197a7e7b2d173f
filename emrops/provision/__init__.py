"""Provisioning EMRsim on Azure from Bicep: render, lint, build, plan, apply, outputs, destroy.

One module per concern; the CLI (emrops/cli/provision.py) only parses and prints.
"""
