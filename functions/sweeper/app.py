"""Sweeper: every 15 minutes, units of unfinished jobs started and overdue, re-driven or failed."""

import os

from aws_lambda_powertools import Logger

from sansnuages.settings import Settings
from sansnuages.stages.sweeper import Sweeper, SweepLimits

logger = Logger()
settings = Settings.from_env()
sweeper = Sweeper.from_settings(settings, SweepLimits.from_env(os.environ))


@logger.inject_lambda_context
def handler(event, context):
    return sweeper.sweep().as_dict()
