"""The qframe-platform policy pack: started by the Pulumi CLI (see PulumiPolicy.yaml and ./analyzer)."""

from pulumi_policy import EnforcementLevel, PolicyPack
from qframe_policy.pack import PACK_NAME, policies

PolicyPack(name=PACK_NAME, policies=policies(), enforcement_level=EnforcementLevel.MANDATORY)
