"""The catalog table itself: reads that both the index writer and the searcher make."""

from __future__ import annotations

from typing import Any

from sansnuages.settings import Settings
from sansnuages.stores import aws
from sansnuages.stores.catalog.records import GSI_NAME, from_attrs, to_attrs


class IndexTable:
    """One DynamoDB table holding the catalog records (see `sansnuages.stores.catalog`)."""

    def __init__(
        self, table_name: str, client: Any = None, settings: Settings | None = None
    ) -> None:
        if client is None:
            if settings is None:
                raise TypeError("the catalog needs a DynamoDB client or the settings to make one")
            client = aws.client("dynamodb", settings)
        self.table = table_name
        self.client = client

    def _find(self, collection_id: str, item_id: str) -> dict[str, Any] | None:
        response = self.client.query(
            TableName=self.table,
            IndexName=GSI_NAME,
            KeyConditionExpression="item_key = :k",
            ExpressionAttributeValues={":k": {"S": f"{collection_id}/{item_id}"}},
        )
        found = [from_attrs(a) for a in response.get("Items", [])]
        return found[0] if found else None

    def _query_all(self, pk: str, projection: str | None = None) -> list[dict[str, Any]]:
        kwargs: dict[str, Any] = {
            "TableName": self.table,
            "KeyConditionExpression": "pk = :pk",
            "ExpressionAttributeValues": {":pk": {"S": pk}},
        }
        if projection:
            kwargs["ProjectionExpression"] = projection
        records: list[dict[str, Any]] = []
        while True:
            response = self.client.query(**kwargs)
            records.extend(from_attrs(a) for a in response.get("Items", []))
            if "LastEvaluatedKey" not in response:
                return records
            kwargs["ExclusiveStartKey"] = response["LastEvaluatedKey"]

    def _get_many(self, pk: str, sort_keys: list[str]) -> list[dict[str, Any]]:
        return self._get_keys([(pk, sk) for sk in sort_keys])

    def _get_keys(
        self, pairs: list[tuple[str, str]], projection: str | None = None
    ) -> list[dict[str, Any]]:
        """The records that exist among (pk, sk) pairs, by BatchGetItem."""
        records: list[dict[str, Any]] = []
        for start in range(0, len(pairs), 100):
            keys = [to_attrs({"pk": pk, "sk": sk}) for pk, sk in pairs[start : start + 100]]
            request: dict[str, Any] = {self.table: {"Keys": keys}}
            if projection:
                request[self.table]["ProjectionExpression"] = projection
            while request:
                response = self.client.batch_get_item(RequestItems=request)
                records.extend(from_attrs(a) for a in response["Responses"].get(self.table, []))
                request = response.get("UnprocessedKeys") or {}
        return records
