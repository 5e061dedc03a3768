"""Run `endura-sensor` with the policy type "sensor" (singleton: the sensor itself, ENDURA_TAMPER_SENSOR) known
to the parser, for the self-protection tests, until the policy language has it (enforce.TAMPER_INDEXES maps
it already): python3 sensor_rule.py run ...
"""
import sys

from endura_sensor import cli, policy

if "sensor" not in policy.RULE_TYPES:
    policy.RULE_TYPES = policy.RULE_TYPES + ("sensor",)
    policy.TYPE_KEYS["sensor"] = ()
    describe = policy.Rule.describe
    policy.Rule.describe = lambda self: "the sensor itself" if self.type == "sensor" else describe(self)

sys.exit(cli.main())
