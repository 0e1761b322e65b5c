"""Mosaic: a finished job -> the area's mosaic (COG, or a part of a large one), preview, Item."""

import json

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.batch import (
    BatchProcessor,
    EventType,
    process_partial_response,
)
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

from sansnuages.raster.gdal import use_gdal
from sansnuages.settings import Settings
from sansnuages.stages.mosaic import Mosaicker

logger = Logger()
processor = BatchProcessor(event_type=EventType.SQS)
settings = Settings.from_env()
use_gdal(settings)
mosaicker = Mosaicker.from_settings(settings)


def record_handler(record: SQSRecord) -> None:
    body = json.loads(record.body)
    logger.append_keys(job=body.get("job_id"), part=body.get("part"))
    mosaicker.handle(body)


@logger.inject_lambda_context
def handler(event, context):
    return process_partial_response(
        event=event, record_handler=record_handler, processor=processor, context=context
    )
