"""Composite: one message per tile of a monthly job -> Level-3A synthesis, Item, fan-in."""

import os

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

from sansnuages.raster.gdal import use_gdal
from sansnuages.settings import Settings
from sansnuages.stages.batches import process_batch
from sansnuages.stages.composite import TileCompositor
from sansnuages.stages.outcomes import is_last_attempt
from sansnuages.stores import aws
from sansnuages.stores.messages import TileTask

logger = Logger()
metrics = Metrics()
processor = BatchProcessor(event_type=EventType.SQS)
settings = Settings.from_env()
use_gdal(settings)
sqs = aws.client("sqs", settings)  # releases failed records early
compositor = TileCompositor.from_settings(settings)
MAX_RECEIVE_COUNT = os.environ.get("COMPOSITE_MAX_RECEIVE_COUNT")


def record_handler(record: SQSRecord) -> None:
    # a message that is no tile task names no unit to fail: it ends in the dead-letter queue
    task = TileTask.from_message(record.body)
    logger.append_keys(job=task.job_id, tile=task.tile)
    last = is_last_attempt(record.attributes.approximate_receive_count, MAX_RECEIVE_COUNT)
    compositor.run(task, last_attempt=last)


@metrics.log_metrics
@logger.inject_lambda_context
def handler(event, context):
    return process_batch(event, context, record_handler, processor, metrics, sqs)
