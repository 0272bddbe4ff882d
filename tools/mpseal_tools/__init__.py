"""Build, flash, deploy, provisioning tools and the simulators used by tests."""
