"""The EMRsim-chat data layer: schema, engines, migrations and the maintenance flag."""
