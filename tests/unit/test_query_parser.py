from __future__ import annotations

import datetime as dt
import math

import pytest

from metalab.errors import QueryError, QuerySyntaxError
from metalab.query import (
    And,
    Compare,
    Contains,
    Exists,
    F,
    Field,
    In,
    Not,
    Or,
    OrderBy,
    build_query,
    parse_order,
    parse_where,
)


class TestParseWhere:
    def test_builder_and_string_give_the_same_tree(self) -> None:
        built = (F.params["lr"] < 0.01) & (F.metrics["acc"] >= 0.9) & (F.status == "success")
        parsed = parse_where('params.lr < 0.01 and metrics.acc >= 0.9 and status == "success"')
        assert built == parsed
        assert isinstance(parsed, And)
        assert len(parsed.items) == 3

    def test_precedence_not_over_and_over_or(self) -> None:
        expr = parse_where("not params.a == 1 and params.b == 2 or params.c == 3")
        assert expr == Or(
            (
                And((Not(F.params["a"] == 1), F.params["b"] == 2)),
                F.params["c"] == 3,
            )
        )

    def test_parentheses_group(self) -> None:
        expr = parse_where("params.a == 1 and (params.b == 2 or params.c == 3)")
        assert expr == And((F.params["a"] == 1, Or((F.params["b"] == 2, F.params["c"] == 3))))

    def test_every_operator(self) -> None:
        assert parse_where("params.x = 1") == Compare(Field("params", ("x",)), "==", 1)
        assert parse_where("params.x != 'a'") == (F.params["x"] != "a")
        assert parse_where("params.x in [1, 2]") == F.params["x"].is_in([1, 2])
        assert parse_where("params.x not in (1, 'b')") == F.params["x"].not_in([1, "b"])
        assert parse_where('tags contains "gpu"') == F.tags.contains("gpu")
        assert parse_where("metrics.loss exists") == F.metrics["loss"].exists()

    def test_keywords_are_case_insensitive(self) -> None:
        assert parse_where("params.a == TRUE AND NOT params.b EXISTS") == And(
            (F.params["a"] == True, Not(F.params["b"].exists()))
        )

    def test_literal_types(self) -> None:
        assert parse_where("params.x == 3").value == 3  # type: ignore[union-attr]
        assert isinstance(parse_where("params.x == 3.0").value, float)  # type: ignore[union-attr]
        assert parse_where("params.x == 1e-3").value == 0.001  # type: ignore[union-attr]
        assert parse_where("params.x < -inf").value == -math.inf  # type: ignore[union-attr]
        assert parse_where(r'params.x == "a \"q\" b"').value == 'a "q" b'  # type: ignore[union-attr]
        assert parse_where("params.x == false").value is False  # type: ignore[union-attr]

    def test_nested_params_and_dotted_metric_keys(self) -> None:
        assert parse_where("params.optim.lr > 0").field == Field("params", ("optim", "lr"))  # type: ignore[union-attr]
        assert parse_where('params."optim.lr" > 0').field == Field("params", ("optim.lr",))  # type: ignore[union-attr]
        assert parse_where("metrics.val.acc > 0").field == Field("metrics", ("val.acc",))  # type: ignore[union-attr]
        assert parse_where('metrics."val acc" > 0').field == Field("metrics", ("val acc",))  # type: ignore[union-attr]

    def test_timestamp_strings_become_utc_datetimes(self) -> None:
        expr = parse_where('started_at >= "2026-01-31T12:00:00+02:00"')
        assert isinstance(expr, Compare)
        assert expr.value == dt.datetime(2026, 1, 31, 10, tzinfo=dt.UTC)


class TestRoundTrip:
    @pytest.mark.parametrize(
        "text",
        [
            "params.lr < 0.01 and metrics.acc >= 0.9",
            'not (params.opt in ["adam", "sgd"] or tags contains "x")',
            'metrics."val acc" exists or params."a.b" != -inf',
            'started_at >= "2026-01-01T00:00:00+00:00" and duration_ms < 1500.5',
            "params.a == true and (params.b == 1 or (params.c == 2 and params.d == 3))",
            "not not params.and == 1",
        ],
    )
    def test_text_to_tree_to_text(self, text: str) -> None:
        expr = parse_where(text)
        assert parse_where(str(expr)) == expr

    def test_keyword_named_keys_are_quoted(self) -> None:
        expr = F.params["and"] == 1
        assert str(expr) == 'params."and" == 1'
        assert parse_where(str(expr)) == expr


class TestSyntaxErrors:
    @pytest.mark.parametrize(
        ("text", "column", "expected"),
        [
            ("params.lr <", 12, "a value"),
            ("params.lr < 0.01 and", 21, "a field"),
            ("params.lr < 0.01 metrics.acc > 1", 18, "'and', 'or'"),
            ("(params.a == 1", 15, "')'"),
            ("params.a ?= 1", 10, "a field, value or operator"),
            ("params", 7, "'.' and a key"),
            ("params.a", 9, "an operator"),
            ("params.a not 3", 14, "'in' after 'not'"),
            ("params.a in [1, ", 17, "a value"),
            ("", 1, "a filter"),
            ('params.a == "open', 13, "a closing quote"),
        ],
    )
    def test_errors_point_at_the_column_and_say_what_was_expected(
        self, text: str, column: int, expected: str
    ) -> None:
        with pytest.raises(QuerySyntaxError) as info:
            parse_where(text)
        assert info.value.column == column
        assert expected in info.value.expected
        assert "^" in str(info.value)

    def test_unknown_field_lists_the_known_ones(self) -> None:
        with pytest.raises(QuerySyntaxError, match=r"params\.<key>.*started_at") as info:
            parse_where("lr < 1")
        assert info.value.column == 1


class TestMeaninglessQueries:
    @pytest.mark.parametrize(
        ("text", "message"),
        [
            ("status < 3", "holds strings, not numbers"),
            ('status == "sucess"', "unknown status 'sucess'"),
            ("params.flag < true", "cannot order booleans"),
            ('started_at > "2026-01-01T00:00:00"', "no time zone"),
            ('started_at > "yesterday"', "not ISO 8601"),
            ("duration_ms == 'x'", "holds numbers, not strings"),
            ("status contains 'a'", "needs a list field"),
        ],
    )
    def test_invalid_comparisons_are_query_errors(self, text: str, message: str) -> None:
        with pytest.raises(QueryError, match=message):
            parse_where(text)

    def test_nan_literals_are_refused(self) -> None:
        with pytest.raises(QueryError, match="NaN never equals"):
            _ = F.metrics["loss"] == math.nan  # noqa: PLW0177

    def test_naive_datetime_literal_is_refused(self) -> None:
        with pytest.raises(QueryError, match="timezone-aware"):
            _ = F.started_at > dt.datetime(2026, 1, 1)  # noqa: DTZ001

    def test_unsupported_literal_type(self) -> None:
        with pytest.raises(QueryError, match="cannot compare"):
            _ = F.params["x"] == [1, 2]

    def test_empty_in_list(self) -> None:
        with pytest.raises(QueryError, match="at least one value"):
            In(Field("params", ("x",)), ())

    def test_unknown_record_field(self) -> None:
        with pytest.raises(QueryError, match="unknown field"):
            Field("record", ("nope",))

    def test_flat_namespaces_take_one_key(self) -> None:
        with pytest.raises(QueryError, match="flat"):
            Field("metrics", ("a", "b"))


class TestOrderAndQuery:
    def test_parse_order_forms(self) -> None:
        assert parse_order("metrics.acc desc, params.lr") == (
            F.metrics["acc"].desc(),
            F.params["lr"].asc(),
        )
        assert parse_order("-metrics.acc") == (OrderBy(Field("metrics", ("acc",)), True),)

    def test_bad_order(self) -> None:
        with pytest.raises(QuerySyntaxError, match="asc"):
            parse_order("metrics.acc up")

    def test_build_query_accepts_strings_and_objects(self) -> None:
        query = build_query("params.lr < 1", order_by=["-metrics.acc", F.run_id.asc()], limit=5)
        assert query.where == (F.params["lr"] < 1)
        assert query.order_by == (F.metrics["acc"].desc(), F.run_id.asc())
        assert query.limit == 5
        assert query.uses_namespace("metrics")
        assert not query.uses_namespace("derived")

    @pytest.mark.parametrize(("limit", "offset"), [(-1, 0), (None, -2), (1.5, 0)])
    def test_bad_windows(self, limit: object, offset: object) -> None:
        with pytest.raises(QueryError):
            build_query(limit=limit, offset=offset)  # type: ignore[arg-type]

    def test_exists_node(self) -> None:
        assert str(Exists(Field("derived", ("x",)))) == "derived.x exists"
        assert str(Contains(Field("record", ("tags",)), "a")) == 'tags contains "a"'
