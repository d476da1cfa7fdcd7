"""One round trip for several one-value questions.

``SELECT (SELECT ...) AS a, (SELECT ...) AS b`` needs no table to select
from, and PostgreSQL and SQLite both run it. The pages use it to ask about
several small tables (heartbeats, runs) in one query, so a page's query
count does not grow with the number of questions it asks.
"""

from __future__ import annotations

from typing import Any

from django.db import connections
from django.db.models import QuerySet


def select_scalars(**queries: QuerySet) -> dict[str, Any]:
    """Each queryset's first value (its first row's single column), or None, in one query.

    Each must select one column (``.values("x")[:1]``, or an aggregate
    subquery); values come back as their field types (a time from SQLite's
    text is an aware datetime, as from the ORM).
    """
    if not queries:
        return {}
    using = next(iter(queries.values())).db
    connection = connections[using]
    parts, params, columns = [], [], []
    for name, queryset in queries.items():
        compiler = queryset.query.get_compiler(using=using)
        sql, query_params = compiler.as_sql()
        if len(compiler.select) != 1:
            raise ValueError(f"{name}: a scalar query selects one column, not {len(compiler.select)}")
        parts.append(f"({sql}) AS {connection.ops.quote_name(name)}")
        params.extend(query_params)
        columns.append(compiler.select[0][0])
    with connection.cursor() as cursor:
        cursor.execute("SELECT " + ", ".join(parts), params)
        row = cursor.fetchone()
    values = {}
    for name, expression, value in zip(queries, columns, row, strict=True):
        converters = connection.ops.get_db_converters(expression) + expression.get_db_converters(connection)
        for convert in converters:
            value = convert(value, expression, connection)
        values[name] = value
    return values


__all__ = ["select_scalars"]
