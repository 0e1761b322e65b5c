"""Plan: the monthly schedule (or a manual request) -> one composite message per tile."""

import os

from aws_lambda_powertools import Logger

from sansnuages.settings import Settings
from sansnuages.stages.plan import JobRequest, plan_job, schedule_lag_days

logger = Logger()
settings = Settings.from_env()
lag_days = schedule_lag_days(os.environ)


@logger.inject_lambda_context
def handler(event, context):
    job, started = plan_job(JobRequest.from_event(event, lag_days), settings)
    return {"job_id": job.job_id, "tiles": [t.tile for t in job.tiles], "started": started}
