"""Mosaic: a finished job -> the area's mosaic (COG, or a part of a large one), preview, Item."""

import os

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

from sansnuages.raster.gdal import use_gdal
from sansnuages.settings import Settings
from sansnuages.stages.batches import process_batch
from sansnuages.stages.mosaic import Mosaicker
from sansnuages.stages.outcomes import is_last_attempt
from sansnuages.stores import aws

logger = Logger()
metrics = Metrics()
processor = BatchProcessor(event_type=EventType.SQS)
settings = Settings.from_env()
use_gdal(settings)
sqs = aws.client("sqs", settings)  # releases failed records early
mosaicker = Mosaicker.from_settings(settings)
MAX_RECEIVE_COUNT = os.environ.get("MOSAIC_MAX_RECEIVE_COUNT")


def record_handler(record: SQSRecord) -> None:
    last = is_last_attempt(record.attributes.approximate_receive_count, MAX_RECEIVE_COUNT)
    mosaicker.handle(record.body, last_attempt=last)


@metrics.log_metrics
@logger.inject_lambda_context
def handler(event, context):
    return process_batch(event, context, record_handler, processor, metrics, sqs)
