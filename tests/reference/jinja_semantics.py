#!/usr/bin/env python3
"""Python Jinja2 reference for data/jinja*.c: small templates, each checking
one point of Jinja/Python semantics, rendered the way transformers renders a
chat template (PreTrainedTokenizerBase._compile_jinja_template): an
ImmutableSandboxedEnvironment with trim_blocks and lstrip_blocks on,
keep_trailing_newline off (the default), the loopcontrols extension,
transformers' own tojson filter (json.dumps, ensure_ascii off, no HTML
escaping) and the globals raise_exception and strftime_now.

Writes tests/fixtures/jinja_semantics.jsonl, one JSON object per line:
  {"name": ..., "template": ..., "vars": {...}, "ok": true,  "text": ...}
  {"name": ..., "template": ..., "vars": {...}, "ok": false,
   "error": "<ExceptionClass>: message", "line": N}
where the template is rendered as env.from_string(template).render(**vars)
and "error" is what parsing or rendering raised. "line" (errors only, when
Python knows it) is the template line the error belongs to: the syntax
error's line, or the template line executing when a render failed.
Names start with a group prefix (print_, cmp_, arith_, lit_, ws_, for_,
scope_, macro_, test_, filter_, tojson_, str_, dict_, index_, slice_,
undef_, call_, sandbox_, err_, chat_) so a test can select or skip groups.

Notes for the C side:
  - vars come from JSON: dict order is the JSON member order (Python dicts keep
    insertion order, and so does iteration over them).
  - A few cases put a whole-number float in vars (print_vars_float_whole,
    tojson_vars_floats): Python reads JSON 1.0 as a float, so it prints 1.0;
    cJSON does not keep that distinction on its own.
  - Printing a generator (map, select, unique, items, reverse of a list)
    shows a memory address in Python, so every such case ends in |list or
    |join; this script refuses output containing " at 0x".
  - U+2028/U+2029 are written as \\u escapes; other non-ASCII is raw UTF-8.

Generated with Jinja2 3.1.6 (MarkupSafe 3.0.3) on CPython 3.11.7. Rerun from
the repository root with a Python that has that Jinja2 (pip install
jinja2==3.1.6; Debian's /usr/bin/python3 here has none):

    python3 tests/reference/jinja_semantics.py            # rewrite the fixture
    python3 tests/reference/jinja_semantics.py --check    # compare, write nothing

Another Jinja2 version is refused unless --any-version is given. The output
is deterministic: no case prints the clock (strftime_now is only measured).
"""
import datetime
import json
import os
import sys
import warnings

import jinja2
from jinja2.ext import loopcontrols
from jinja2.sandbox import ImmutableSandboxedEnvironment

JINJA2_VERSION = "3.1.6"

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
FIXTURE = os.path.join(ROOT, "tests", "fixtures", "jinja_semantics.jsonl")


def make_env():
    """transformers.utils.chat_template_utils._compile_jinja_template, verbatim
    in what it sets up."""

    def raise_exception(message):
        raise jinja2.exceptions.TemplateError(message)

    def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
        # transformers overrides Jinja's tojson, which would escape HTML characters
        return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)

    def strftime_now(format):
        return datetime.datetime.now().strftime(format)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[loopcontrols])
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = strftime_now
    return env


CASES = []


def case(name, template, vars=None):
    CASES.append((name, template, vars if vars is not None else {}))


# Shared vars -----------------------------------------------------------------
M_USER = [{"role": "user", "content": "Hi"}]
M2 = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"}]
M3 = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "Hi"},
    {"role": "assistant", "content": "Hello!"},
]
M4 = M3 + [{"role": "user", "content": "Bye"}]
PEOPLE = [{"name": "bob", "age": 30}, {"name": "Al", "age": 25}, {"name": "cy", "age": 35}]
TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather \"now\" in a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string", "enum": []}, "opts": {}},
            "required": ["city"],
        },
    },
}

# printing: Python str() of values ---------------------------------------------
case("print_true", "{{ true }}")
case("print_false", "{{ false }}")
case("print_none", "{{ none }}")
case("print_int", "{{ 42 }}")
case("print_negative_int", "{{ -7 }}")
case("print_large_int_beyond_double", "{{ 9007199254740993 }}")
case("print_float_1_0", "{{ 1.0 }}")
case("print_float_0_1", "{{ 0.1 }}")
case("print_float_3_14", "{{ 3.14 }}")
case("print_float_1e20", "{{ 1e20 }}")
case("print_float_1_5e_minus7", "{{ 1.5e-7 }}")
case("print_float_negative_zero", "{{ -0.0 }}")
case("print_float_1e15_positional", "{{ 1e15 }}")
case("print_float_1e16_exponent", "{{ 1e16 }}")
case("print_float_0_0001_positional", "{{ 0.0001 }}")
case("print_float_0_00001_exponent", "{{ 0.00001 }}")
case("print_float_one_third", "{{ 1 / 3 }}")
case("print_float_inexact_sum", "{{ 0.1 + 0.2 }}")
case("print_float_many_digits", "{{ 123456789.125 }}")
case("print_vars_float", "{{ x }}", {"x": 2.5})
case("print_vars_float_whole", "{{ x }}", {"x": 1.0})
case("print_vars_int", "{{ x }}", {"x": 3})
case("print_vars_bool_null", "{{ a }} {{ b }} {{ c }}", {"a": True, "b": False, "c": None})
case("print_string", "{{ 'hi' }}")
case("print_list_mixed", "{{ [1, 'a', none, true, 1.5] }}")
case("print_list_empty", "{{ [] }}")
case("print_dict", "{{ {'a': 1, 'b': [2, 'x']} }}")
case("print_dict_empty", "{{ {} }}")
case("print_dict_int_key", "{{ {1: 'one', 2.5: none} }}")
case("print_tuple", "{{ (1, 'b') }}")
case("print_tuple_single", "{{ (1,) }}")
case("print_tuple_empty", "{{ () }}")
case("print_nested", "{{ [[1, [2]], {'k': (3, none)}] }}")
case("print_vars_list_of_strings", "{{ x }}", {"x": ["a", "b"]})
case("print_vars_nested_dict", "{{ x }}", {"x": {"a": {"b": None, "c": [True]}}})
case("print_vars_message", "{{ messages[0] }}", {"messages": M_USER})
case("print_repr_single_quote_uses_double", "{{ [\"it's\"] }}")
case("print_repr_double_quote_uses_single", "{{ ['say \"hi\"'] }}")
case("print_repr_both_quotes", r"""{{ ['it\'s "x"'] }}""")
case("print_repr_escapes", r"{{ ['a\nb\tc\\d\re'] }}")
case("print_repr_control_chars", r"{{ ['\x01\x1b\x7f'] }}")
case("print_repr_non_ascii_kept", "{{ ['é', '日本', '😀'] }}")
case("print_repr_unprintable_unicode", r"{{ ['\u00a0', '\u200b', '\u2028'] }}")
case("print_repr_dict_string_values", "{{ {'q': \"it's\", \"k'\": 'v'} }}")
case("print_undefined_empty", "[{{ nothing }}]")
case("print_concat_list_repr", "{{ 'x' ~ [1, 'a'] }}")
case("print_range_repr", "{{ range(3) }}")
case("print_dict_items_view", "{{ d.items() }}", {"d": {"a": 1}})

# truthiness, equality, comparisons, membership ------------------------------
case("cmp_empty_string_eq_false", "{{ '' == false }}")
case("cmp_zero_eq_false", "{{ 0 == false }}")
case("cmp_one_eq_true", "{{ 1 == true }}")
case("cmp_two_eq_true", "{{ 2 == true }}")
case("cmp_int_eq_float", "{{ 1 == 1.0 }}")
case("cmp_none_eq_none", "{{ none == none }}")
case("cmp_none_eq_false", "{{ none == false }}")
case("cmp_empty_lists_eq", "{{ [] == [] }}")
case("cmp_list_eq_tuple", "{{ [1, 2] == (1, 2) }}")
case("cmp_dict_eq_order_free", "{{ {'a': 1, 'b': 2} == {'b': 2, 'a': 1} }}")
case("cmp_int_eq_string", "{{ 1 == '1' }}")
case("cmp_ne", "{{ 'a' != 'b' }} {{ 1 != 1.0 }}")
case("cmp_string_lt", "{{ 'apple' < 'banana' }}")
case("cmp_string_codepoint_order", "{{ 'Z' < 'a' }} {{ 'é' > 'z' }}")
case("cmp_string_prefix", "{{ 'ab' < 'abc' }}")
case("cmp_list_lt", "{{ [1, 2] < [1, 3] }}")
case("cmp_le_ge", "{{ 2 <= 2 }} {{ 1.5 >= 2 }}")
case("cmp_int_lt_string_error", "{{ 1 < 'a' }}")
case("cmp_none_lt_int_error", "{{ none < 1 }}")
case("cmp_chained_true", "{{ 1 < 2 < 3 }}")
case("cmp_chained_false", "{{ 3 > 2 > 2 }}")
case("cmp_chained_eq", "{{ 1 < 3 == 3 }}")
case("cmp_in_substring", "{{ 'a' in 'cat' }}")
case("cmp_in_empty_substring", "{{ '' in 'cat' }}")
case("cmp_in_list", "{{ 'x' in ['x', 'y'] }}")
case("cmp_in_list_numeric", "{{ 1.0 in [1, 2] }}")
case("cmp_in_dict_key", "{{ 'k' in {'k': 1} }}")
case("cmp_in_dict_value_false", "{{ 1 in {'k': 1} }}")
case("cmp_not_in_string", "{{ 'z' not in 'abc' }}")
case("cmp_not_in_list", "{{ 3 not in [1, 2] }}")
case("cmp_in_vars_message", "{{ 'tool_calls' in messages[0] }} {{ 'role' in messages[0] }}", {"messages": M_USER})
case("cmp_int_in_int_error", "{{ 1 in 5 }}")
case("cmp_int_in_string_error", "{{ 1 in 'a1' }}")
case("cmp_falsy_values", "{% for v in ['', 0, 0.0, [], {}, none, false, ()] %}{{ 'T' if v else 'F' }}{% endfor %}")
case("cmp_truthy_values", "{% for v in ['0', ' ', 'False', [0], {'a': 0}, -1, 0.1, (0,)] %}{{ 'T' if v else 'F' }}{% endfor %}")
case("cmp_truthy_undefined", "{{ 'T' if nope else 'F' }}")
case("cmp_truthy_vars_empty_string", "{% if x %}T{% else %}F{% endif %}", {"x": ""})
case("cmp_and_returns_operand", "{{ 'a' and 'b' }}")
case("cmp_and_short_circuit_value", "{{ 0 and 'b' }}")
case("cmp_or_returns_operand", "{{ '' or 'x' }}")
case("cmp_or_returns_last", "{{ 0 or none }}")
case("cmp_or_short_circuit_skips_error", "{{ 1 or nope.x }}")
case("cmp_not", "{{ not '' }} {{ not 'a' }}")
case("cmp_not_binds_looser_than_eq", "{{ not 1 == 2 }}")
case("cmp_not_binds_looser_than_in", "{{ not 'a' in 'abc' }}")
case("cmp_and_before_or", "{{ true or false and false }}")
case("cmp_cond_expr", "{{ 'y' if 1 else 'n' }}")
case("cmp_cond_expr_no_else", "[{{ 'y' if false }}]")
case("cmp_cond_expr_nested", "{{ 'a' if false else 'b' if true else 'c' }}")

# arithmetic and concatenation ------------------------------------------------
case("arith_true_division", "{{ 7 / 2 }}")
case("arith_true_division_whole", "{{ 6 / 2 }}")
case("arith_floor_division", "{{ 7 // 2 }}")
case("arith_floor_division_negative", "{{ -7 // 2 }}")
case("arith_floor_division_float", "{{ 7.5 // 2 }} {{ -7 // 2.0 }}")
case("arith_mod_negative_dividend", "{{ -7 % 3 }}")
case("arith_mod_negative_divisor", "{{ 7 % -3 }}")
case("arith_mod_float", "{{ 5.5 % 2 }}")
case("arith_pow", "{{ 2 ** 10 }}")
case("arith_pow_negative_exponent", "{{ 2 ** -1 }}")
case("arith_pow_left_associative", "{{ 2 ** 3 ** 2 }}")
case("arith_unary_minus_then_pow", "{{ -2 ** 2 }}")
case("arith_int_plus_float", "{{ 1 + 1.5 }}")
case("arith_float_whole_result", "{{ 0.5 + 0.5 }}")
case("arith_float_mul_inexact", "{{ 0.1 * 3 }}")
case("arith_bool_plus_int", "{{ true + 1 }}")
case("arith_sub_left_associative", "{{ 10 - 2 - 3 }}")
case("arith_div_left_associative", "{{ 100 / 10 / 4 }}")
case("arith_mul_before_add", "{{ 2 + 3 * 4 }}")
case("arith_parentheses", "{{ (2 + 3) * 4 }}")
case("arith_div_by_zero_error", "{{ 1 / 0 }}")
case("arith_floordiv_by_zero_error", "{{ 1 // 0 }}")
case("arith_mod_by_zero_error", "{{ 1 % 0 }}")
case("arith_string_plus_string", "{{ 'a' + 'b' }}")
case("arith_string_times_int", "{{ 'ab' * 3 }}")
case("arith_int_times_string", "{{ 3 * 'ab' }}")
case("arith_string_times_zero", "[{{ 'ab' * 0 }}]")
case("arith_list_plus_list", "{{ [1] + [2, 3] }}")
case("arith_list_times_int", "{{ [0] * 3 }}")
case("arith_string_plus_int_error", "{{ 'a' + 1 }}")
case("arith_int_plus_string_error", "{{ 1 + 'a' }}")
case("arith_int_plus_none_error", "{{ 1 + none }}")
case("arith_string_minus_error", "{{ 'ab' - 'a' }}")
case("arith_list_plus_tuple_error", "{{ [1] + (2,) }}")
case("arith_vars", "{{ a * b - c }}", {"a": 6, "b": 7, "c": 2})
case("arith_unary_minus_var", "{{ -x }}", {"x": 5})
case("arith_unary_plus", "{{ +5 }}")
case("arith_unary_minus_string_error", "{{ -'a' }}")
case("arith_unary_minus_binds_tighter_than_filter", "{{ -x|abs }}", {"x": -3})
case("arith_unary_minus_literal_then_filter", "{{ -3|abs }} {{ -(3|abs) }}")
case("arith_parenthesized_negative_filter", "{{ (-3)|abs }}")
case("arith_filter_binds_to_last_operand", "{{ 'a' + 'b'|upper }}")
case("arith_filter_on_parentheses", "{{ ('a' + 'b')|upper }}")
case("concat_numbers", "{{ 1 ~ 2 }}")
case("concat_none_bool", "{{ 'a' ~ none ~ true }}")
case("concat_float", "{{ 1.0 ~ '' }}")
case("concat_undefined_is_empty", "{{ 'a' ~ nope ~ 'b' }}")
case("concat_binds_tighter_than_plus", "{{ 'n' ~ 1 + 2 }}")
case("concat_looser_than_mul", "{{ 'x' ~ 2 * 3 }}")
case("concat_parenthesized_sum", "{{ 'x' ~ (1 + 2) }}")
case("concat_vars", "{{ a ~ b ~ c }}", {"a": "x", "b": 1, "c": None})

# literals ------------------------------------------------------------------
case("lit_escape_newline", r"{{ 'a\nb' }}")
case("lit_escape_tab", r"{{ 'a\tb' }}")
case("lit_escape_backslash", r"{{ 'a\\b' }}")
case("lit_escape_single_quote", r"{{ 'it\'s' }}")
case("lit_escape_double_quote", r'{{ "say \"hi\"" }}')
case("lit_escape_hex", r"{{ '\x41' }}")
case("lit_escape_unicode4", r"{{ '\u00e9' }}")
case("lit_escape_unicode8", r"{{ '\U0001F600' }}")
case("lit_escape_unknown_kept", r"{{ '\q' }}")
case("lit_escape_in_double_quotes", r'{{ "a\nb" }}')
case("lit_raw_newline_in_string", "{{ 'a\nb' }}")
case("lit_non_ascii_string", "{{ 'héllo 日本' }}")
case("lit_adjacent_strings", "{{ 'a' \"b\" 'c' }}")
case("lit_int_underscore", "{{ 1_000 }}")
case("lit_float_exponent", "{{ 1e3 }} {{ 2.5e-3 }} {{ 1E2 }}")
case("lit_list_trailing_comma", "{{ [1, 2,] }}")
case("lit_dict_expressions", "{{ {'a': 1 + 1, 'b' ~ 'c': 'd',} }}")
case("lit_true_false_spellings", "{{ true }} {{ True }} {{ false }} {{ False }}")
case("lit_none_spellings", "{{ none }} {{ None }}")
case("lit_uppercase_true_is_a_name", "[{{ TRUE }}]")
case("lit_parentheses_not_tuple", "{{ (1) }}")
case("lit_tuple_without_parentheses", "{% set t = 1, 2 %}{{ t }}")
case("lit_string_holding_variable_end", "{{ '}}' }}")
case("lit_string_holding_variable_tag", "{{ '{{ x }}' }}")
case("lit_string_holding_block_end", "{% set x = '%}' %}{{ x }}")
case("lit_raw_block", "{% raw %}{{ x }}{% if %}{% endraw %}")

# whitespace control: trim_blocks, lstrip_blocks, -, + ----------------------
case("ws_trim_blocks_newline_after_tag", "a\n{% if true %}\nb\n{% endif %}\nc")
case("ws_variable_tag_keeps_newline", "{{ 'a' }}\nb")
case("ws_lstrip_indented_tags", "  {% if true %}\n  x\n  {% endif %}\ny")
case("ws_lstrip_tabs", "\t{% if true %}\nx\n\t{% endif %}\ny")
case("ws_tag_after_text_same_line", "a {% if true %}b{% endif %} c")
case("ws_text_before_tag_not_stripped", "a  {% if true %}\nb{% endif %}")
case("ws_spaces_after_tag_kept", "{% if true %}  \nx{% endif %}")
case("ws_lstrip_not_for_variable", "  {{ 'x' }}")
case("ws_minus_block_left", "a  \n  {%- if true %}b{% endif %}")
case("ws_minus_block_right", "{% if true -%}  \n\n  b{% endif %}")
case("ws_minus_variable_both", "a \n {{- 'b' -}} \n c")
case("ws_minus_comment_both", "a \n {#- c -#} \n b")
case("ws_minus_across_blank_lines", "a\n\n\n{%- if true %}b{% endif %}")
case("ws_plus_disables_lstrip", "  {%+ if true %}x{% endif %}")
case("ws_plus_disables_trim_blocks", "{% if true +%}\nx{% endif %}")
case("ws_comment_own_line", "a\n{# note #}\nb")
case("ws_comment_indented_line", "a\n  {# note #}\nb")
case("ws_comment_inline", "a{# c #}b")
case("ws_comment_multiline", "a\n{# line1\nline2 #}\nb")
case("ws_trailing_newline_removed", "x\n")
case("ws_trailing_two_newlines_one_removed", "x\n\n")
case("ws_trailing_newline_after_block_tag", "{% if true %}x{% endif %}\n")
case("ws_trailing_newline_after_variable", "{{ 'x' }}\n")
case("ws_crlf_text", "a\r\nb\r\nc")
case("ws_crlf_trim_blocks", "{% if true %}\r\nx\r\n{% endif %}\r\ny")
case("ws_lone_cr_text", "a\rb")
case("ws_crlf_inside_string_literal", "{{ 'a\r\nb' }}")
case("ws_escaped_crlf_kept", r"{{ 'a\r\nb' }}")
case("ws_blank_line_between_tags", "{% set a = 1 %}\n\n{% set b = 2 %}\n{{ a + b }}")
case("ws_for_loop_lines", "{% for x in [1, 2] %}\n{{ x }}\n{% endfor %}\n")
case("ws_lstrip_then_text_on_line", "  {% if true %}x\n{% endif %}")
case("ws_variable_minus_in_loop", "{% for x in [1, 2, 3] %}\n  {{- x }}\n{% endfor %}")
case("ws_nested_indented_blocks", "<\n{% for x in [1, 2] %}\n    {% if x == 2 %}\n    two\n    {% endif %}\n{% endfor %}\n>")

# for loops ---------------------------------------------------------------
case("for_basic", "{% for x in [1, 2, 3] %}{{ x }},{% endfor %}")
case("for_loop_index_index0", "{% for x in 'abc' %}{{ loop.index }}{{ loop.index0 }} {% endfor %}")
case("for_loop_revindex", "{% for x in 'abc' %}{{ loop.revindex }}{{ loop.revindex0 }} {% endfor %}")
case("for_loop_first_last", "{% for x in [1, 2, 3] %}{{ loop.first }}-{{ loop.last }} {% endfor %}")
case("for_loop_length", "{% for x in [5, 6] %}{{ loop.length }}{% endfor %}")
case("for_loop_previtem_nextitem", "{% for x in [1, 2, 3] %}[{{ loop.previtem }}|{{ loop.nextitem }}]{% endfor %}")
case("for_loop_previtem_defined", "{% for x in [1, 2] %}{{ loop.previtem is defined }}/{{ loop.nextitem is defined }} {% endfor %}")
case("for_loop_single_item", "{% for x in [7] %}{{ loop.first }}{{ loop.last }}{{ loop.length }}{% endfor %}")
case("for_loop_cycle", "{% for x in range(4) %}{{ loop.cycle('a', 'b', 'c') }}{% endfor %}")
case("for_nested", "{% for a in [1, 2] %}{% for b in 'xy' %}{{ a }}{{ b }} {% endfor %}{% endfor %}")
case("for_nested_loop_is_inner", "{% for a in [1, 2] %}{% for b in 'xyz' %}{{ loop.index }}{% endfor %};{% endfor %}")
case("for_nested_outer_loop_saved", "{% for a in [1, 2] %}{% set outer = loop %}{% for b in 'xy' %}{{ outer.index }}{{ loop.index }} {% endfor %}{% endfor %}")
case("for_dict_items", "{% for k, v in d.items() %}{{ k }}={{ v }};{% endfor %}", {"d": {"b": 1, "a": 2}})
case("for_dict_items_filter", "{% for k, v in d|items %}{{ k }}={{ v }};{% endfor %}", {"d": {"b": 1, "a": 2}})
case("for_dict_iterates_keys", "{% for k in d %}{{ k }}{% endfor %}", {"d": {"b": 1, "a": 2}})
case("for_dict_values", "{% for v in d.values() %}{{ v }}{% endfor %}", {"d": {"b": 1, "a": 2}})
case("for_string_characters", "{% for c in 'héy😀' %}[{{ c }}]{% endfor %}")
case("for_tuple", "{% for x in (1, 'a') %}{{ x }}{% endfor %}")
case("for_unpack_pairs", "{% for a, b in [[1, 2], [3, 4]] %}{{ a }}{{ b }} {% endfor %}")
case("for_unpack_wrong_count_error", "{% for a, b in [[1, 2, 3]] %}{% endfor %}")
case("for_if_filter", "{% for x in range(10) if x is odd %}{{ x }}{% endfor %}")
case("for_if_filter_loop_counts", "{% for x in range(10) if x % 3 == 0 %}{{ loop.index }}/{{ loop.length }}{{ '.' if loop.last }} {% endfor %}")
case("for_continue_keeps_loop_index", "{% for x in range(5) %}{% if x is even %}{% continue %}{% endif %}{{ loop.index }}{% endfor %}")
case("for_break", "{% for x in range(10) %}{% if x == 3 %}{% break %}{% endif %}{{ x }}{% endfor %}")
case("for_else_empty", "{% for x in [] %}x{% else %}empty{% endfor %}")
case("for_else_not_taken", "{% for x in [1] %}x{% else %}empty{% endfor %}")
case("for_else_filter_removes_all", "{% for x in [1, 3] if x is even %}x{% else %}none{% endfor %}")
case("for_else_after_break_in_first_iteration", "{% for x in [1, 2] %}{% break %}{% else %}else{% endfor %}done")
case("for_else_after_break_in_second_iteration", "{% for x in [1, 2] %}{% if x == 2 %}{% break %}{% endif %}{% else %}else{% endfor %}done")
case("for_over_none_error", "{% for x in none %}{% endfor %}")
case("for_over_int_error", "{% for x in 3 %}{% endfor %}")
case("for_over_undefined_is_empty", "{% for x in nope %}x{% else %}empty{% endfor %}")
case("for_variable_not_leaked", "{% for x in [1, 2] %}{% endfor %}[{{ x }}]")
case("for_variable_shadows_outer", "{% set x = 'o' %}{% for x in [1] %}{{ x }}{% endfor %}{{ x }}")
case("for_range_step", "{% for i in range(0, 10, 3) %}{{ i }} {% endfor %}")
case("for_messages_slice", "{% for m in messages[1:] %}{{ m.role }} {% endfor %}", {"messages": M3})
case("for_messages_reversed_slice", "{% for m in messages[::-1] %}{{ m.role }}:{{ loop.index0 }} {% endfor %}", {"messages": M3})
case("for_alternation_check", "{% for m in messages %}{{ (m.role == 'user') == (loop.index0 % 2 == 0) }} {% endfor %}", {"messages": M2})

# scoping -----------------------------------------------------------------
case("scope_set_in_for_not_leaked", "{% set c = 0 %}{% for x in [1, 2] %}{% set c = c + x %}{% endfor %}{{ c }}")
case("scope_set_in_for_reads_outer_each_time", "{% set c = 10 %}{% for x in [1, 2] %}{% set c = c + x %}{{ c }} {% endfor %}")
case("scope_set_in_for_undefined_after", "{% for x in [1] %}{% set y = 5 %}{% endfor %}[{{ y }}]")
case("scope_set_in_if_leaks", "{% if true %}{% set y = 1 %}{% endif %}{{ y }}")
case("scope_set_in_else_leaks", "{% if false %}{% else %}{% set y = 2 %}{% endif %}{{ y }}")
case("scope_set_in_if_inside_for_not_leaked", "{% for x in [1] %}{% if true %}{% set y = 1 %}{% endif %}{{ y }}{% endfor %}[{{ y }}]")
case("scope_set_overwrite", "{% set x = 1 %}{% set x = x + 1 %}{{ x }}")
case("scope_set_shadows_render_var", "{% set name = 'b' %}{{ name }}", {"name": "a"})
case("scope_namespace_counter", "{% set ns = namespace(total=0) %}{% for x in [1, 2, 3] %}{% set ns.total = ns.total + x %}{% endfor %}{{ ns.total }}")
case("scope_namespace_flag", "{% set ns = namespace(found=false) %}{% for m in messages %}{% if m.role == 'system' %}{% set ns.found = true %}{% endif %}{% endfor %}{{ ns.found }}", {"messages": M3})
case("scope_namespace_kwargs", "{% set ns = namespace(a=1, b='x') %}{{ ns.a }}{{ ns.b }}")
case("scope_namespace_new_attribute", "{% set ns = namespace() %}{% set ns.x = 3 %}{{ ns.x }}")
case("scope_namespace_missing_attribute", "{% set ns = namespace() %}[{{ ns.x }}]")
case("scope_namespace_nested_loops", "{% set ns = namespace(n=0) %}{% for a in [1, 2] %}{% for b in [1, 2, 3] %}{% set ns.n = ns.n + 1 %}{% endfor %}{% endfor %}{{ ns.n }}")
case("scope_namespace_in_macro", "{% set ns = namespace(n=0) %}{% macro bump() %}{% set ns.n = ns.n + 1 %}{% endmacro %}{{ bump() }}{{ bump() }}{{ ns.n }}")
case("scope_set_attribute_on_dict_error", "{% set d = {} %}{% set d.a = 1 %}")
case("scope_block_set", "{% set x %}hello {{ 1 + 1 }}{% endset %}[{{ x }}]")
case("scope_block_set_trim_blocks", "{% set x %}\nline\n{% endset %}[{{ x }}]")
case("scope_block_set_filter", "{% set x | upper %}abc{% endset %}{{ x }}")
case("scope_set_unpack_list", "{% set a, b = [1, 2] %}{{ b }}{{ a }}")
case("scope_set_unpack_tuple", "{% set a, b = 'x', 'y' %}{{ a }}{{ b }}")
case("scope_set_unpack_count_error", "{% set a, b = [1] %}")
case("scope_macro_sees_top_level_set", "{% set g = 5 %}{% macro m() %}{{ g }}{% endmacro %}{{ m() }}")
case("scope_macro_sees_later_top_level_set", "{% macro m() %}[{{ g }}]{% endmacro %}{% set g = 5 %}{{ m() }}")
case("scope_macro_sees_render_vars", "{% macro m() %}{{ bos_token }}{% endmacro %}{{ m() }}", {"bos_token": "<s>"})
case("scope_macro_set_not_leaked", "{% macro m() %}{% set z = 1 %}{{ z }}{% endmacro %}{{ m() }}[{{ z }}]")
case("scope_macro_in_loop_sees_loop_var", "{% for x in [1, 2] %}{% macro m() %}{{ x }}{% endmacro %}{{ m() }}{% endfor %}")

# macros ----------------------------------------------------------------
case("macro_basic", "{% macro greet(name) %}Hi {{ name }}!{% endmacro %}{{ greet('Bob') }}")
case("macro_default_argument", "{% macro f(a, b='B') %}{{ a }}{{ b }}{% endmacro %}{{ f(1) }} {{ f(1, 2) }}")
case("macro_keyword_arguments", "{% macro f(a, b) %}{{ a }}{{ b }}{% endmacro %}{{ f(b=2, a=1) }}")
case("macro_missing_argument_undefined", "{% macro f(a, b) %}[{{ a }}|{{ b }}|{{ b is defined }}]{% endmacro %}{{ f(1) }}")
case("macro_too_many_arguments_error", "{% macro f(a) %}{{ a }}{% endmacro %}{{ f(1, 2) }}")
case("macro_unknown_keyword_error", "{% macro f(a) %}{{ a }}{% endmacro %}{{ f(c=1) }}")
case("macro_recursion", "{% macro fact(n) %}{% if n <= 1 %}1{% else %}{{ n * fact(n - 1)|int }}{% endif %}{% endmacro %}{{ fact(5) }}")
case("macro_recursion_tree", "{% macro walk(items) %}{% for i in items %}{{ i.name }}{% if i.children %}({{ walk(i.children) }}){% endif %}{% endfor %}{% endmacro %}{{ walk(tree) }}",
     {"tree": [{"name": "a", "children": [{"name": "b"}, {"name": "c", "children": [{"name": "d"}]}]}, {"name": "e"}]})
case("macro_output_whitespace", "{% macro m() %}\n  x\n{% endmacro %}[{{ m() }}]")
case("macro_result_is_string", "{% macro m() %}12{% endmacro %}{{ m()|length }} {{ m() is string }} {{ m() ~ 3 }}")
case("macro_argument_default_expression", "{% macro f(a, sep=', ' ~ '|') %}{{ a|join(sep) }}{% endmacro %}{{ f([1, 2]) }}")

# filter blocks ---------------------------------------------------------
case("filterblock_upper", "{% filter upper %}abc {{ 'd' }}{% endfilter %}")
case("filterblock_trim", "{% filter trim %}\n  x  \n{% endfilter %}")
case("filterblock_with_arguments", "{% filter replace('a', 'o') %}banana{% endfilter %}")
case("filterblock_chained", "{% filter trim|upper %}  ab  {% endfilter %}")

# tests (is) ------------------------------------------------------------
case("test_defined", "{{ x is defined }} {{ nope is defined }}", {"x": 0})
case("test_undefined", "{{ nope is undefined }} {{ x is undefined }}", {"x": ""})
case("test_defined_none_value", "{{ none is defined }} {{ x is defined }}", {"x": None})
case("test_defined_dict_key", "{{ d.a is defined }} {{ d.b is defined }} {{ d['b'] is defined }}", {"d": {"a": 1}})
case("test_defined_attr_of_undefined_error", "{{ nope.x is defined }}")
case("test_defined_attr_of_none", "{{ none.x is defined }}")
case("test_none", "{{ none is none }} {{ 0 is none }} {{ nope is none }}")
case("test_string", "{{ 'a' is string }} {{ 1 is string }} {{ nope is string }}")
case("test_mapping", "{{ {} is mapping }} {{ [] is mapping }} {{ messages[0] is mapping }}", {"messages": M_USER})
case("test_iterable", "{{ 'a' is iterable }} {{ [] is iterable }} {{ {} is iterable }} {{ 1 is iterable }} {{ none is iterable }}")
case("test_sequence", "{{ 'ab' is sequence }} {{ [1] is sequence }} {{ {} is sequence }} {{ 1 is sequence }}")
case("test_number", "{{ 1 is number }} {{ 1.5 is number }} {{ '1' is number }} {{ true is number }}")
case("test_integer", "{{ 1 is integer }} {{ 1.0 is integer }} {{ true is integer }}")
case("test_float", "{{ 1.0 is float }} {{ 1 is float }}")
case("test_boolean", "{{ true is boolean }} {{ 1 is boolean }}")
case("test_true_false", "{{ true is true }} {{ 1 is true }} {{ false is false }} {{ 0 is false }} {{ none is false }}")
case("test_equalto", "{{ 2 is equalto 2 }} {{ 2 is equalto(3) }}")
case("test_eq_alias", "{{ 'a' is eq 'a' }} {{ 1 is eq(1.0) }}")
case("test_ne", "{{ 1 is ne 2 }}")
case("test_ordering_tests", "{{ 3 is gt 2 }} {{ 3 is ge 3 }} {{ 2 is lt 1 }} {{ 2 is le 2 }}")
case("test_sameas", "{{ none is sameas none }} {{ true is sameas true }} {{ 1 is sameas true }}")
case("test_odd_even", "{{ 3 is odd }} {{ 3 is even }} {{ 0 is even }} {{ -1 is odd }}")
case("test_odd_on_string_error", "{{ 'a' is odd }}")
case("test_divisibleby", "{{ 9 is divisibleby 3 }} {{ 9 is divisibleby(4) }}")
case("test_lower_upper", "{{ 'abc' is lower }} {{ 'aBc' is lower }} {{ 'ABC' is upper }} {{ 'A1' is upper }} {{ '12' is lower }}")
case("test_callable", "{{ raise_exception is callable }} {{ range is callable }} {{ 'x' is callable }} {{ 'x'.upper is callable }}")
case("test_in", "{{ 2 is in [1, 2] }} {{ 'a' is in 'cat' }} {{ 'k' is in {'k': 1} }}")
case("test_is_not", "{{ 1 is not none }} {{ nope is not defined }}")
case("test_not_applies_to_test", "{{ not nope is defined }}")
case("test_in_if_with_and", "{% if x is defined and x %}yes{% else %}no{% endif %}", {"x": ""})
case("test_on_vars_content", "{{ messages[0].content is string }} {{ messages[0].content is none }}", {"messages": M_USER})
case("test_unknown_error", "{{ 1 is frobnicated }}")
case("test_unknown_in_untaken_branch", "{% if false %}{{ 1 is frobnicated }}{% endif %}ok")
case("test_is_binds_tighter_than_not_and_and", "{{ not 1 is odd and 2 is even }}")

# filters -----------------------------------------------------------------
case("filter_trim", "[{{ '  a b \n'|trim }}]")
case("filter_trim_chars", "{{ 'xxaxx'|trim('x') }}")
case("filter_trim_unicode_whitespace", "[{{ '\u3000a\u00a0'|trim }}]")
case("filter_length_string_code_points", "{{ 'héllo😀'|length }}")
case("filter_length_list_dict", "{{ [1, 2]|length }} {{ {'a': 1}|length }} {{ ''|length }}")
case("filter_length_undefined", "{{ nope|length }}")
case("filter_length_none_error", "{{ none|length }}")
case("filter_count_alias", "{{ 'abc'|count }}")
case("filter_list_of_string", "{{ 'héy'|list }}")
case("filter_list_of_dict", "{{ {'a': 1, 'b': 2}|list }}")
case("filter_list_of_tuple", "{{ (1, 2)|list }}")
case("filter_list_of_none_error", "{{ none|list }}")
case("filter_items", "{{ d|items|list }}", {"d": {"a": 1, "b": [2]}})
case("filter_join_default", "{{ [1, 2, 3]|join }}")
case("filter_join_separator", "{{ ['a', 'b']|join(', ') }}")
case("filter_join_attribute", "{{ messages|join('/', attribute='role') }}", {"messages": M3})
case("filter_join_string", "{{ 'abc'|join('-') }}")
case("filter_join_non_strings", "{{ [1, none, true, 1.5]|join(',') }}")
case("filter_string", "{{ 1|string }} {{ none|string }} {{ [1, 'a']|string }} {{ true|string }}")
case("filter_lower_upper", "{{ 'HeLLo'|lower }} {{ 'HeLLo'|upper }}")
case("filter_lower_upper_non_ascii", "{{ 'ÉCOLE'|lower }} {{ 'straße'|upper }}")
case("filter_title", "{{ \"hello world-foo bar's\"|title }}")
case("filter_title_mixed_case", "{{ 'hELLO (wORLD) x_y'|title }}")
case("filter_capitalize", "{{ 'hELLO wORLD'|capitalize }}")
case("filter_replace", "{{ 'aaa'|replace('a', 'b') }}")
case("filter_replace_count", "{{ 'aaa'|replace('a', 'b', 2) }}")
case("filter_replace_empty_old", "{{ 'ab'|replace('', '-') }}")
case("filter_default_undefined", "{{ nope|default('x') }}")
case("filter_default_none_not_replaced", "{{ none|default('x') }}")
case("filter_default_empty_string_kept", "[{{ ''|default('x') }}]")
case("filter_default_boolean_true", "{{ ''|default('x', true) }} {{ 0|default(5, true) }} {{ none|default('n', true) }} {{ 'v'|default('x', true) }}")
case("filter_default_no_argument", "[{{ nope|default }}]")
case("filter_default_false_kept", "{{ false|default('x') }}")
case("filter_d_alias", "{{ nope|d('y') }}")
case("filter_default_dict_missing_key", "{{ d.k|default('dflt') }}", {"d": {}})
case("filter_indent_default", "{{ 'a\nb'|indent }}")
case("filter_indent_width", "{{ 'a\nb\nc'|indent(2) }}")
case("filter_indent_first", "{{ 'a\nb'|indent(2, true) }}")
case("filter_indent_first_keyword", "{{ 'a\nb'|indent(width=3, first=true) }}")
case("filter_indent_blank_lines_skipped", "{{ 'a\n\nb'|indent(2) }}")
case("filter_indent_blank_true", "{{ 'a\n\nb'|indent(2, blank=true) }}")
case("filter_indent_trailing_newline", "[{{ 'a\nb\n'|indent(2) }}]")
case("filter_indent_string_width", "{{ 'a\nb'|indent('> ') }}")
case("filter_first_last", "{{ [1, 2, 3]|first }} {{ [1, 2, 3]|last }} {{ 'abc'|first }} {{ 'abc'|last }}")
case("filter_first_last_empty", "[{{ []|first }}][{{ []|last }}]")
case("filter_last_message", "{{ (messages|last).role }}", {"messages": M3})
case("filter_map_attribute", "{{ messages|map(attribute='role')|list }}", {"messages": M3})
case("filter_map_attribute_dotted", "{{ tools|map(attribute='function.name')|join(',') }}", {"tools": [TOOL, TOOL]})
case("filter_map_attribute_default", "{{ messages|map(attribute='name', default='-')|list }}", {"messages": M2})
case("filter_map_filter_name", "{{ ['a', 'b']|map('upper')|join }}")
case("filter_map_filter_with_args", "{{ ['a b', 'c d']|map('replace', ' ', '_')|list }}")
case("filter_map_int_sum", "{{ ['1', '2']|map('int')|sum }}")
case("filter_select_test", "{{ range(6)|select('odd')|list }}")
case("filter_select_truthy", "{{ [0, 1, '', 'a', none, []]|select|list }}")
case("filter_select_test_with_argument", "{{ [1, 2, 3, 2]|select('equalto', 2)|list }} {{ [1, 5, 10]|select('gt', 4)|list }}")
case("filter_select_in", "{{ ['a', 'b', 'c']|select('in', ['a', 'c'])|list }}")
case("filter_reject", "{{ [1, none, 2]|reject('none')|list }} {{ range(5)|reject('even')|list }}")
case("filter_selectattr_equalto", "{{ messages|selectattr('role', 'equalto', 'user')|map(attribute='content')|list }}", {"messages": M4})
case("filter_selectattr_eq_symbol", "{{ messages|selectattr('role', '==', 'system')|list|length }}", {"messages": M4})
case("filter_selectattr_defined", "{{ messages|selectattr('tool_calls', 'defined')|list|length }}",
     {"messages": M2 + [{"role": "assistant", "content": None, "tool_calls": []}]})
case("filter_selectattr_truthy", "{{ people|selectattr('active')|map(attribute='n')|list }}",
     {"people": [{"n": 1, "active": True}, {"n": 2, "active": False}, {"n": 3}, {"n": 4, "active": "yes"}]})
case("filter_rejectattr", "{{ messages|rejectattr('role', 'equalto', 'system')|map(attribute='role')|join(',') }}", {"messages": M3})
case("filter_unique", "{{ [1, 2, 1, 3, 2]|unique|list }}")
case("filter_unique_case_insensitive", "{{ ['a', 'A', 'b', 'B', 'a']|unique|list }}")
case("filter_unique_case_sensitive", "{{ ['a', 'A', 'a']|unique(case_sensitive=true)|list }}")
case("filter_unique_attribute", "{{ messages|unique(attribute='role')|map(attribute='content')|list }}", {"messages": M4})
case("filter_safe", "{{ '<b>&'|safe }}")
case("filter_int", "{{ '42'|int }} {{ '4.7'|int }} {{ 'abc'|int }} {{ 'abc'|int(7) }} {{ ' 12 '|int }}")
case("filter_int_from_numbers", "{{ 3.9|int }} {{ -3.9|int }} {{ true|int }} {{ none|int }} {{ '1e3'|int }}")
case("filter_float", "{{ '1.5'|float }} {{ 'x'|float }} {{ 2|float }} {{ 'x'|float(1.5) }} {{ '1e3'|float }}")
case("filter_abs", "{{ (-3)|abs }} {{ (-2.5)|abs }} {{ 4|abs }}")
case("filter_abs_string_error", "{{ 'a'|abs }}")
case("filter_round", "{{ 2.567|round(2) }} {{ 3.5|round }} {{ 2.5|round }} {{ 0.125|round(2) }}")
case("filter_round_methods", "{{ 2.1|round(method='ceil') }} {{ 2.9|round(0, 'floor') }} {{ -2.5|round(method='floor') }}")
case("filter_round_int", "{{ 3|round }} {{ 3|round(1) }}")
case("filter_reverse", "{{ [1, 2, 3]|reverse|list }} {{ 'abc'|reverse }} {{ 'héy'|reverse }}")
case("filter_sort", "{{ [3, 1, 2]|sort }}")
case("filter_sort_case_insensitive", "{{ ['b', 'A', 'c', 'B']|sort }}")
case("filter_sort_case_sensitive", "{{ ['b', 'A', 'c', 'B']|sort(case_sensitive=true) }}")
case("filter_sort_reverse", "{{ [3, 1, 2]|sort(reverse=true) }}")
case("filter_sort_attribute", "{{ people|sort(attribute='age')|map(attribute='name')|join(',') }}", {"people": PEOPLE})
case("filter_sort_attribute_string", "{{ people|sort(attribute='name')|map(attribute='name')|join(',') }}", {"people": PEOPLE})
case("filter_sort_mixed_types_error", "{{ [1, 'a']|sort }}")
case("filter_dictsort", "{{ {'b': 1, 'a': 2, 'C': 0}|dictsort }}")
case("filter_dictsort_by_value", "{{ {'b': 1, 'a': 2, 'C': 0}|dictsort(by='value') }}")
case("filter_sum", "{{ [1, 2, 3]|sum }} {{ [0.1, 0.2]|sum }} {{ []|sum }} {{ [1]|sum(start=10) }}")
case("filter_sum_attribute", "{{ people|sum(attribute='age') }}", {"people": PEOPLE})
case("filter_min_max", "{{ [3, 1, 2]|min }} {{ [3, 1, 2]|max }} {{ [1.5, 2]|max }}")
case("filter_min_max_case_insensitive", "{{ ['B', 'a', 'c']|min }} {{ ['B', 'a']|max }}")
case("filter_max_attribute", "{{ (people|max(attribute='age')).name }}", {"people": PEOPLE})
case("filter_max_empty", "[{{ []|max }}]")
case("filter_format", "{{ '%s-%d'|format('a', 3) }}")
case("filter_chain", "{{ '  Hello World  '|trim|lower|replace(' ', '_') }}")
case("filter_unknown_error", "{{ 'a'|frobnicate }}")
case("filter_unknown_in_untaken_branch", "{% if false %}{{ x|frobnicate }}{% endif %}ok")
case("filter_arguments_with_parentheses_only", "{{ 'a-b'|replace('-', '+') }}{{ 'ab'|upper() }}")

# tojson (transformers' json.dumps wrapper) -------------------------------
case("tojson_string", "{{ 'hi'|tojson }}")
case("tojson_string_quotes_backslash", r"""{{ 'a"b\\c'|tojson }}""")
case("tojson_string_single_quote", "{{ \"it's\"|tojson }}")
case("tojson_control_chars", r"{{ 'a\nb\tc\rd\x01\x1f\x08\x0c'|tojson }}")
case("tojson_del_and_line_separator_raw", r"{{ '\x7f\u2028'|tojson }}")
case("tojson_non_ascii_raw", "{{ 'héllo 日本'|tojson }}")
case("tojson_emoji_raw", "{{ '😀'|tojson }}")
case("tojson_no_html_escaping", "{{ '<b>&amp;</b>'|tojson }}")
case("tojson_slash_not_escaped", "{{ 'a/b'|tojson }}")
case("tojson_scalars", "{{ [1, 1.0, 0.1, 1e20, 1.5e-7, -0.0, true, false, none]|tojson }}")
case("tojson_float_one_third", "{{ (1 / 3)|tojson }}")
case("tojson_large_int", "{{ 9007199254740993|tojson }}")
case("tojson_vars_floats", "{{ x|tojson }}", {"x": [1.0, 2.5, 1e-07, 100.0]})
case("tojson_dict_default_separators", "{{ {'a': 1, 'b': [1, 2]}|tojson }}")
case("tojson_empty_containers", "{{ [[], {}]|tojson }}")
case("tojson_tuple_is_array", "{{ (1, 'a')|tojson }}")
case("tojson_non_string_keys", "{{ {1: 'a', 2.5: 'b', none: 'c', false: 'd'}|tojson }}")
case("tojson_vars_key_order", "{{ x|tojson }}", {"x": {"z": 1, "a": {"y": None, "b": True}}})
case("tojson_tool", "{{ tool|tojson }}", {"tool": TOOL})
case("tojson_indent_2", "{{ {'a': 1, 'b': [1, 'x'], 'c': {}}|tojson(indent=2) }}")
case("tojson_indent_4_nested", "{{ tool|tojson(indent=4) }}", {"tool": TOOL})
case("tojson_indent_0", "{{ {'a': [1]}|tojson(indent=0) }}")
case("tojson_indent_empty_top_level", "{{ {}|tojson(indent=2) }} {{ []|tojson(indent=2) }}")
case("tojson_sort_keys", "{{ {'b': 1, 'a': {'d': 1, 'c': 2}}|tojson(sort_keys=true) }}")
case("tojson_separators_compact", "{{ {'a': [1, 2]}|tojson(separators=(',', ':')) }}")
case("tojson_ensure_ascii", "{{ 'é😀'|tojson(ensure_ascii=true) }}")
case("tojson_positional_argument_is_ensure_ascii", "{{ {'k': 'é'}|tojson(2) }}")
case("tojson_string_holding_json", "{{ '{\"a\": 1}'|tojson }}")
case("tojson_undefined_error", "{{ nope|tojson }}")
case("tojson_messages", "{{ messages|tojson }}", {"messages": M2})

# str methods -------------------------------------------------------------
case("str_strip", "[{{ '  a b \n'.strip() }}]")
case("str_strip_chars", "{{ 'xyaxyx'.strip('xy') }}")
case("str_lstrip_rstrip", "[{{ '  a  '.lstrip() }}][{{ '  a  '.rstrip() }}]")
case("str_lstrip_rstrip_chars", "{{ '\n\nabc\n'.lstrip('\n') }}|{{ 'abc!!'.rstrip('!') }}")
case("str_strip_unicode_whitespace", r"[{{ '\u3000\u00a0a\u2003'.strip() }}]")
case("str_split_whitespace", "{{ '  a  b\tc\n'.split() }}")
case("str_split_separator", "{{ ',a,,b'.split(',') }}")
case("str_split_maxsplit", "{{ 'a,b,c'.split(',', 1) }}")
case("str_split_none_maxsplit", "{{ ' a b c'.split(none, 1) }}")
case("str_split_multichar", "{{ 'a</think>b'.split('</think>') }}")
case("str_split_separator_absent", "{{ 'abc'.split('x') }}")
case("str_split_empty_separator_error", "{{ 'abc'.split('') }}")
case("str_rsplit", "{{ 'a/b/c'.rsplit('/', 1) }}")
case("str_startswith", "{{ 'hello'.startswith('he') }} {{ 'hello'.startswith('lo') }}")
case("str_startswith_tuple", "{{ 'hello'.startswith(('x', 'he')) }}")
case("str_endswith_tuple", "{{ 'file.py'.endswith(('.js', '.py')) }}")
case("str_upper_lower_methods", "{{ 'aB'.upper() }}{{ 'aB'.lower() }}")
case("str_title_method", "{{ \"hello world-foo bar's\".title() }}")
case("str_capitalize_method", "{{ 'hELLO wORLD'.capitalize() }}")
case("str_replace_method", "{{ 'a.b.c'.replace('.', '/') }} {{ 'a.b.c'.replace('.', '/', 1) }}")
case("str_find_count", "{{ 'abc'.find('c') }} {{ 'abc'.find('z') }} {{ 'banana'.count('a') }}")
case("str_join_method", "{{ ', '.join(['a', 'b']) }}")
case("str_format_method", "{{ '{}-{}'.format(1, 'b') }}")
case("str_percent_format", "{{ '%s=%d' % ('a', 3) }}")
case("str_method_on_vars", "{{ messages[0].content.upper() }}", {"messages": M_USER})
case("str_method_on_undefined_error", "{{ nope.strip() }}")

# dicts, attributes, subscripts, slices ----------------------------------
case("dict_keys_values", "{{ d.keys()|list }} {{ d.values()|list }}", {"d": {"b": 1, "a": 2}})
case("dict_get", "{{ d.get('a') }} {{ d.get('z') }} {{ d.get('z', 'dflt') }}", {"d": {"a": 1}})
case("dict_get_missing_is_none_not_undefined", "{{ d.get('z') is none }} {{ d.get('z') is defined }}", {"d": {}})
case("dict_attribute_access", "{{ d.a }} {{ d['a'] }}", {"d": {"a": 1}})
case("dict_attribute_prefers_method", "{{ d['items'] }} {{ d.items is callable }}", {"d": {"items": "x"}})
case("dict_missing_key_undefined", "[{{ d['z'] }}][{{ d.z }}]", {"d": {}})
case("dict_missing_key_attribute_error", "{{ d.z.y }}", {"d": {}})
case("dict_int_key_subscript", "{{ {1: 'a'}[1] }}")
case("undefined_attribute_error", "{{ nope.x }}")
case("none_attribute_undefined", "[{{ none.x }}]")
case("none_attribute_chain_error", "{{ none.x.y }}")
case("index_string", "{{ 'abc'[0] }}{{ 'abc'[-1] }}")
case("index_string_non_ascii", "{{ 'é😀x'[1] }}")
case("index_list_negative", "{{ [1, 2, 3][-1] }}")
case("index_out_of_range_undefined", "[{{ [1, 2][5] }}][{{ 'ab'[9] }}]")
case("index_out_of_range_used_error", "{{ [1, 2][5] + 1 }}")
case("index_with_variable", "{{ messages[i].role }}", {"messages": M3, "i": 1})
case("index_dot_integer", "{{ messages.0.role }}", {"messages": M3})
case("slice_string_from_1", "{{ 'hello'[1:] }}")
case("slice_string_last_3", "{{ 'hello'[-3:] }}")
case("slice_string_reverse", "{{ 'hello'[::-1] }}")
case("slice_string_drop_last", "{{ 'hello'[:-1] }}")
case("slice_string_step", "{{ 'abcdefg'[1:6:2] }}")
case("slice_string_non_ascii", "{{ 'héllo😀'[1:3] }} {{ 'héllo😀'[::-1] }}")
case("slice_string_out_of_range", "[{{ 'abc'[5:] }}][{{ 'abc'[-10:2] }}]")
case("slice_list_negative", "{{ [1, 2, 3, 4][-2:] }} {{ [1, 2, 3, 4][:-2] }} {{ [1, 2, 3, 4, 5][::-2] }}")
case("slice_tuple_stays_tuple", "{{ (1, 2, 3)[1:] }}")

# undefined values ----------------------------------------------------------
case("undef_eq", "{{ nope == 1 }} {{ nope != 1 }} {{ nope == nope2 }}")
case("undef_string_filters_empty", "[{{ nope|upper }}|{{ nope|trim }}|{{ nope|string }}|{{ nope|join }}]")
case("undef_list_items", "{{ nope|list }} {{ nope|items|list }}")
case("undef_membership", "{{ nope in [1] }} {{ 'a' in nope }}")
case("undef_not", "{{ not nope }}")
case("undef_plus_error", "{{ nope + 1 }}")
case("undef_mul_error", "{{ nope * 2 }}")
case("undef_lt_error", "{{ nope < 1 }}")
case("undef_index_error", "{{ nope[0] }}")
case("undef_int_filter_error", "{{ nope|int }}")
case("undef_call_error", "{{ nope() }}")

# callables and globals ---------------------------------------------------
case("call_range", "{{ range(3)|list }} {{ range(1, 5)|list }} {{ range(0, 10, 3)|list }}")
case("call_range_negative_step_and_empty", "{{ range(5, 0, -2)|list }} {{ range(0)|list }} {{ range(3, 1)|list }}")
case("call_range_length", "{{ range(5)|length }}")
case("call_namespace_attribute", "{{ namespace(a=1).a }}")
case("call_dict_global", "{{ dict(a=1, b='x') }}")
case("call_dict_global_tojson", "{{ dict(name='f', arguments={'x': 1})|tojson }}")
case("call_raise_exception", "{{ raise_exception('Bad role') }}")
case("call_raise_exception_in_taken_branch", "{% if messages[0].role != 'user' %}{{ raise_exception('First message must be from the user') }}{% endif %}ok", {"messages": M3})
case("call_raise_exception_in_untaken_branch", "{% if messages[0].role != 'user' %}{{ raise_exception('First message must be from the user') }}{% endif %}ok", {"messages": M2})
case("call_strftime_now_year_length", "{{ strftime_now('%Y')|length }}")
case("call_strftime_now_is_string", "{{ strftime_now('%d %b %Y') is string }}")
case("call_non_callable_error", "{{ 'a'() }}")
case("call_method_with_keyword", "{{ 'a,b,c'.split(',', maxsplit=1) }}")

# sandbox -----------------------------------------------------------------
case("sandbox_list_append", "{% set x = [] %}{{ x.append(1) }}")
case("sandbox_dict_update", "{% set d = {} %}{{ d.update({'a': 1}) }}")
case("sandbox_list_sort_method", "{{ [3, 1].sort() }}")
case("sandbox_private_attribute", "{{ ''.__class__ }}")

# syntax and runtime errors ---------------------------------------------
case("err_unknown_tag", "{% frobnicate %}")
case("err_do_tag_not_enabled", "{% set x = [] %}{% do x.append(1) %}")
case("err_unclosed_if", "{% if true %}a")
case("err_unclosed_for", "{% for x in [1] %}a")
case("err_endfor_without_for", "a{% endfor %}")
case("err_elif_after_else", "{% if x %}{% else %}{% elif y %}{% endif %}")
case("err_unclosed_variable", "{{ x ")
case("err_unclosed_string", "{{ 'abc }}")
case("err_empty_expression", "{{ }}")
case("err_dangling_operator", "{{ 1 + }}")
case("err_break_outside_loop", "{% break %}")
case("err_set_to_literal", "{% set 1 = 2 %}")
case("err_unknown_filter", "{{ x|nosuch }}")
case("err_undefined_plus_one", "{{ x + 1 }}")
case("err_string_plus_int", "{{ 'a' + 1 }}")
case("err_syntax_line_number", "a\nb\n{% if %}\nc")
case("err_runtime_line_number", "a\n{{ 'x' }}\n{{ 1 / 0 }}\nb")

# chat-template constructs --------------------------------------------------
CHATML = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>' + '\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)
case("chat_chatml_generation_prompt", CHATML, {"messages": M2, "add_generation_prompt": True})
case("chat_chatml_no_generation_prompt", CHATML, {"messages": M2, "add_generation_prompt": False})
case("chat_chatml_generation_prompt_absent", CHATML, {"messages": M_USER})
SYSTEM_SPLIT = (
    "{% if messages[0]['role'] == 'system' %}"
    "{% set system_message = messages[0]['content'] %}{% set loop_messages = messages[1:] %}"
    "{% else %}{% set system_message = 'You are helpful.' %}{% set loop_messages = messages %}{% endif %}"
    "[{{ system_message }}]{% for m in loop_messages %}{{ m.role }};{% endfor %}"
)
case("chat_system_split_present", SYSTEM_SPLIT, {"messages": M3})
case("chat_system_split_absent", SYSTEM_SPLIT, {"messages": M2})
MISTRAL = (
    "{{ bos_token }}{% for message in messages %}"
    "{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
    "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}"
    "{% if message['role'] == 'user' %}{{ '[INST] ' + message['content'] + ' [/INST]' }}"
    "{% elif message['role'] == 'assistant' %}{{ message['content'] + eos_token}}"
    "{% else %}{{ raise_exception('Only user and assistant roles are supported!') }}{% endif %}{% endfor %}"
)
TOKENS = {"bos_token": "<s>", "eos_token": "</s>"}
case("chat_mistral_alternating", MISTRAL, dict(TOKENS, messages=M2 + [{"role": "user", "content": "More"}]))
case("chat_mistral_not_alternating_error", MISTRAL, dict(TOKENS, messages=[M2[0], M2[0]]))
case("chat_mistral_system_role_error", MISTRAL, dict(TOKENS, messages=M3))
LLAMA3 = (
    "{% set loop_messages = messages %}{% for message in loop_messages %}"
    "{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n'+ message['content'] | trim + '<|eot_id|>' %}"
    "{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}{{ content }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{% endif %}"
)
case("chat_llama3_trim_binds_to_content", LLAMA3,
     {"bos_token": "<|begin_of_text|>", "add_generation_prompt": True,
      "messages": [{"role": "system", "content": "  Be brief.\n"}, {"role": "user", "content": "\n Hi \n"}]})
ZEPHYR = (
    "{% for message in messages %}\n"
    "{% if message['role'] == 'user' %}\n"
    "{{ '<|user|>\\n' + message['content'] + eos_token }}\n"
    "{% elif message['role'] == 'system' %}\n"
    "{{ '<|system|>\\n' + message['content'] + eos_token }}\n"
    "{% elif message['role'] == 'assistant' %}\n"
    "{{ '<|assistant|>\\n'  + message['content'] + eos_token }}\n"
    "{% endif %}\n"
    "{% if loop.last and add_generation_prompt %}\n"
    "{{ '<|assistant|>' }}\n"
    "{% endif %}\n"
    "{% endfor %}"
)
case("chat_zephyr_multiline", ZEPHYR, {"eos_token": "</s>", "messages": M3, "add_generation_prompt": True})
GEMMA = (
    "{{ bos_token }}{% if messages[0]['role'] == 'system' %}{{ raise_exception('System role not supported') }}{% endif %}"
    "{% for message in messages %}"
    "{% if (message['role'] == 'assistant') %}{% set role = 'model' %}{% else %}{% set role = message['role'] %}{% endif %}"
    "{{ '<start_of_turn>' + role + '\\n' + message['content'] | trim + '<end_of_turn>\\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{'<start_of_turn>model\\n'}}{% endif %}"
)
case("chat_gemma_role_mapping", GEMMA, {"bos_token": "<bos>", "messages": M2, "add_generation_prompt": True})
QWEN_TOOLS = """{%- if tools %}
    {{- '<|im_start|>system\\n' }}
    {%- if messages[0].role == 'system' %}
        {{- messages[0].content + '\\n\\n' }}
    {%- endif %}
    {{- "# Tools\\n\\n<tools>" }}
    {%- for tool in tools %}
        {{- "\\n" }}
        {{- tool | tojson }}
    {%- endfor %}
    {{- "\\n</tools><|im_end|>\\n" }}
{%- endif %}
{%- for message in messages %}
    {%- if message.role == "user" or (message.role == "system" and not loop.first) %}
        {{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>' + '\\n' }}
    {%- elif message.role == "assistant" %}
        {{- '<|im_start|>' + message.role }}
        {%- if message.content %}
            {{- '\\n' + message.content }}
        {%- endif %}
        {%- for tool_call in message.tool_calls %}
            {%- if tool_call.function is defined %}
                {%- set tool_call = tool_call.function %}
            {%- endif %}
            {{- '\\n<tool_call>\\n{"name": "' }}
            {{- tool_call.name }}
            {{- '", "arguments": ' }}
            {%- if tool_call.arguments is string %}
                {{- tool_call.arguments }}
            {%- else %}
                {{- tool_call.arguments | tojson }}
            {%- endif %}
            {{- '}\\n</tool_call>' }}
        {%- endfor %}
        {{- '<|im_end|>\\n' }}
    {%- elif message.role == "tool" %}
        {%- if loop.index0 == 0 or messages[loop.index0 - 1].role != "tool" %}
            {{- '<|im_start|>user' }}
        {%- endif %}
        {{- '\\n<tool_response>\\n' }}
        {{- message.content }}
        {{- '\\n</tool_response>' }}
        {%- if loop.last or (messages[loop.index0 + 1].role != "tool") %}
            {{- '<|im_end|>\\n' }}
        {%- endif %}
    {%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|im_start|>assistant\\n' }}
{%- endif %}
"""
TOOL_MESSAGES = [
    {"role": "system", "content": "Use tools."},
    {"role": "user", "content": "Weather in Paris and Köln?"},
    {"role": "assistant", "content": None, "tool_calls": [
        {"type": "function", "function": {"name": "get_weather", "arguments": {"city": "Paris", "unit": "°C"}}},
        {"type": "function", "function": {"name": "get_weather", "arguments": "{\"city\": \"Köln\"}"}},
    ]},
    {"role": "tool", "content": "18"},
    {"role": "tool", "content": "15"},
    {"role": "assistant", "content": "Paris 18, Köln 15."},
]
case("chat_qwen_tools_and_tool_calls", QWEN_TOOLS, {"messages": TOOL_MESSAGES, "tools": [TOOL], "add_generation_prompt": True})
case("chat_qwen_no_tools", QWEN_TOOLS, {"messages": M3, "tools": None, "add_generation_prompt": False})
QWEN3_THINK = """{%- for message in messages %}
    {%- if message.role == "assistant" %}
        {%- set content = message.content %}
        {%- set reasoning_content = '' %}
        {%- if '</think>' in content %}
            {%- set reasoning_content = content.split('</think>')[0].rstrip('\\n').split('<think>')[-1].lstrip('\\n') %}
            {%- set content = content.split('</think>')[-1].lstrip('\\n') %}
        {%- endif %}
        {{- '<|im_start|>assistant\\n<think>\\n' + reasoning_content.strip('\\n') + '\\n</think>\\n\\n' + content.lstrip('\\n') + '<|im_end|>\\n' }}
    {%- else %}
        {{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>\\n' }}
    {%- endif %}
{%- endfor %}"""
case("chat_qwen3_think_split", QWEN3_THINK,
     {"messages": [{"role": "user", "content": "2+2?"},
                   {"role": "assistant", "content": "<think>\nadd them\n</think>\n\n4"},
                   {"role": "user", "content": "ok"},
                   {"role": "assistant", "content": "no thinking here"}]})
case("chat_think_split_last_part", "{{ message.content.split('</think>')[-1] | trim }}",
     {"message": {"content": "<think>x</think>\n answer \n"}})
LAST_QUERY = """{%- set ns = namespace(multi_step_tool=true, last_query_index=messages|length - 1) %}
{%- for message in messages[::-1] %}
    {%- set index = (messages|length - 1) - loop.index0 %}
    {%- if ns.multi_step_tool and message.role == "user" and not(message.content.startswith('<tool_response>') and message.content.endswith('</tool_response>')) %}
        {%- set ns.multi_step_tool = false %}
        {%- set ns.last_query_index = index %}
    {%- endif %}
{%- endfor %}
{{- ns.last_query_index }}"""
case("chat_namespace_last_query_index", LAST_QUERY,
     {"messages": [{"role": "user", "content": "q1"}, {"role": "assistant", "content": "a"},
                   {"role": "user", "content": "q2"}, {"role": "assistant", "content": "b"},
                   {"role": "user", "content": "<tool_response>r</tool_response>"}]})
CONTENT_PARTS = (
    "{% for message in messages %}{{ message.role }}: "
    "{% if message.content is string %}{{ message.content }}"
    "{% else %}{% for part in message.content %}"
    "{% if part.type == 'text' %}{{ part.text }}{% elif part.type == 'image' %}<image>{% endif %}"
    "{% endfor %}{% endif %}\n{% endfor %}"
)
case("chat_content_parts", CONTENT_PARTS,
     {"messages": [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "What is this?"}]},
                   {"role": "assistant", "content": "A cat."}]})
LLAMA31 = """{{- bos_token }}
{%- if not date_string is defined %}
    {%- set date_string = "26 Jul 2024" %}
{%- endif %}
{%- if messages[0]['role'] == 'system' %}
    {%- set system_message = messages[0]['content']|trim %}
    {%- set messages = messages[1:] %}
{%- else %}
    {%- set system_message = "" %}
{%- endif %}
{{- "<|start_header_id|>system<|end_header_id|>\\n\\n" }}
{{- "Today Date: " + date_string + "\\n\\n" }}
{%- if tools is not none %}
    {{- "You have access to " + tools | length | string + " tool(s):\\n\\n" }}
    {%- for t in tools %}
        {{- t | tojson(indent=4) }}
        {{- "\\n\\n" }}
    {%- endfor %}
{%- endif %}
{{- system_message }}
{{- "<|eot_id|>" }}
{%- for message in messages %}
    {{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n'+ message['content'] | trim + '<|eot_id|>' }}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}
{%- endif %}
"""
case("chat_llama31_tools_indent4", LLAMA31,
     {"bos_token": "<|begin_of_text|>", "messages": M3, "tools": [TOOL], "add_generation_prompt": True})
case("chat_llama31_date_string_given", LLAMA31,
     {"bos_token": "<|begin_of_text|>", "messages": M2, "tools": None, "date_string": "01 Jan 2025"})
case("chat_message_missing_key", "{% for m in messages %}[{{ m.name }}]{% if m.name is defined %}named{% endif %}{% endfor %}", {"messages": M_USER})
case("chat_content_none_check", "{% for m in messages %}{% if m.content is none %}N{% elif m.content %}{{ m.content }}{% endif %};{% endfor %}",
     {"messages": [{"role": "assistant", "content": None}, {"role": "user", "content": "x"}, {"role": "user", "content": ""}]})
case("chat_im_start_concat", "{% for message in messages %}{{ '<|im_start|>' + message.role + '\n' }}{% endfor %}", {"messages": M2})
case("chat_last_message_role", "{{ messages[-1].role }} {{ messages|length }}", {"messages": M3})
case("chat_eos_after_assistant", "{% for m in messages %}{% if m.role == 'assistant' %}{{ m.content + eos_token }}{% else %}{{ m.content }}|{% endif %}{% endfor %}", dict(TOKENS, messages=M2))
case("chat_loop_last_generation_prompt", "{% for m in messages %}{{ m.content }}{% if loop.last and add_generation_prompt %}<gen>{% endif %}{% endfor %}",
     {"messages": M2, "add_generation_prompt": True})
DEEPSEEK_NS = (
    "{% set ns = namespace(is_first=false, system_prompt='') %}"
    "{%- for message in messages %}{%- if message['role'] == 'system' %}"
    "{%- if ns.is_first %}{%- set ns.system_prompt = ns.system_prompt + '\\n\\n' + message['content'] %}"
    "{%- else %}{%- set ns.system_prompt = message['content'] %}{%- set ns.is_first = true %}{%- endif %}"
    "{%- endif %}{%- endfor %}{{ bos_token }}{{ ns.system_prompt }}"
)
case("chat_namespace_system_prompt_accumulate", DEEPSEEK_NS,
     {"bos_token": "<｜begin▁of▁sentence｜>", "messages": [{"role": "system", "content": "A"}, {"role": "user", "content": "u"}, {"role": "system", "content": "B"}]})


# -----------------------------------------------------------------------------
def error_line(exc):
    """The template line an exception belongs to, if Python knows it."""
    if isinstance(exc, jinja2.TemplateSyntaxError) and exc.lineno:
        return exc.lineno
    line = None
    tb = exc.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == "<template>":
            line = tb.tb_lineno
        tb = tb.tb_next
    return line


def run_case(env, name, template, vars):
    vars = json.loads(json.dumps(vars))  # exactly what a reader of the fixture gets
    rec = {"name": name, "template": template, "vars": vars}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "\q" is an invalid escape (DeprecationWarning)
            text = env.from_string(template).render(**vars)
        rec["ok"] = True
        rec["text"] = text
        if " at 0x" in text or "<generator" in text:
            raise SystemExit(f"{name}: output depends on memory addresses: {text!r}")
    except Exception as e:  # TemplateError and its kinds, and TypeError, ValueError, ... from Python itself
        rec["ok"] = False
        rec["error"] = f"{type(e).__name__}: {e}"
        line = error_line(e)
        if line is not None:
            rec["line"] = line
    return rec


def to_line(rec):
    s = json.dumps(rec, ensure_ascii=False)
    # Valid JSON either way, but line-splitting readers (Python's splitlines)
    # break lines at U+2028/U+2029.
    return s.replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")


# ---- Markup (|safe, |escape): a plain string added to one is escaped, even with autoescape off ----
case("markup_safe_plus_plain", "{{ 'Use '|safe + '\"x\" & <y>' }}")
case("markup_plain_plus_safe", "{{ '<b>' + 'a<'|safe }}")
case("markup_tilde_is_plain", "{{ 'a<'|safe ~ '<b>' }}")
case("markup_lower_keeps", "{{ ('x'|safe + '<')|lower + '<' }}")
case("markup_title_filter_plain", "{{ ('a'|safe|title) + '<' }}")
case("markup_repeat_keeps", "{{ ('<'|safe) * 2 + '<' }}")
case("markup_method_keeps", "{{ ('a'|safe).upper() + '<' }}")
case("markup_split_items_keep", "{{ ('a b'|safe).split()[0] + '<' }}")
case("markup_trim_indent_string_keep", "{{ ('a'|safe|trim) + '<' }}{{ ('a'|safe|indent(2)) + '<' }}{{ ('a'|safe|string) + '<' }}")
case("markup_index_keeps", "{{ ('a'|safe)[0] + '<' }}")
case("markup_join_tojson_plain", "{{ (['a'|safe, 'b']|join(',')) + '<' }}{{ ('a'|safe|tojson) + '<' }}")
case("markup_escape_filter", "{{ ('a'|e) + '<' }}{{ '<&>'|e }}")
case("markup_repr", "{{ ['a'|safe] }}")
case("markup_functionary_tools_line",
     "{{ \"Use the function '\"|safe + t['name'] + \"' to '\"|safe + t['description'] + \"'\\n\"|safe + t | tojson() }}",
     {"t": {"name": "get_weather", "description": "Weather <now> & \"later\"", "parameters": {"type": "object"}}})

# ---- found by review: whitespace control, conversions, case mapping ----
case("ws_raw_keeps_newline_after_raw_tag", "{% raw %}\nA\n{% endraw %}\nB")
case("ws_lstrip_blocks_unicode_space", "a\n\u00a0{% if true %}b{% endif %}")
case("ws_dash_strips_unicode_space", "a \u3000{%- if true %}b{% endif %}")
case("filter_int_underscores_and_floats", "{{ '1_000'|int }} {{ ' 42 '|int }} {{ '1e3'|int }} {{ '0x1A'|int }} {{ 'inf'|int(-1) }} {{ '2.5'|float }} {{ '_1'|int(7) }}")
case("filter_round_int_negative", "{{ 7|round(-1) }} {{ 15|round(-1) }} {{ 25|round(-1) }} {{ -15|round(-1) }} {{ 1234|round(-2) }}")
case("filter_lower_final_sigma", "{{ 'ΣΟΦΟΣ'|lower }} {{ 'ΟΔΟΣ ΣΑ'|lower }} {{ 'Σ'|lower }}")
case("filter_upper_latin1_extras", "{{ 'ÿ µ'|upper }}")

# ---- found by the second review ----
case("filter_int_base", "{{ '1A'|int(0, 16) }} {{ '12'|int(base=8) }} {{ '0x1A'|int(0, 16) }} {{ '0b101'|int(base=0) }} {{ 'zz'|int(5, 10) }}")
case("markup_join_escapes_items", "{{ ('a'|safe).join(['<', '>']) }}")
case("filter_lower_greek_tonos_and_sigma", "{{ 'ΆΈΉΊΌΎΏ'|lower }} {{ 'A.Σ'|lower }} {{ 'ΣΑΣ.'|lower }} {{ 'άέ'|upper }}")
case("filter_title_sharp_s", "{{ 'ßa'|title }} {{ 'ßa'.title() }} {{ 'ßa'|capitalize }}")
case("filter_max_min_first_of_ties", "{{ ['b', 'a', 'B']|max }} {{ ['B', 'a', 'b', 'A']|min }}")
case("filter_sort_lists", "{{ [[2, 1], [1, 2], [1, 1]]|sort }} {{ [[2], [1, 5]]|max }}")
case("generator_truthy_even_empty", "{% if [1, 2]|select('>', 5) %}yes{% else %}no{% endif %}")
case("generator_no_len", "{{ [1, 2]|map('string')|length }}")
case("generator_not_json", "{{ [{'function': {'name': 'f'}}]|map(attribute='function')|tojson }}")
case("generator_subscript_undefined", "[{{ ([1, 2]|select)[0] }}]")
case("generator_list_and_join", "{{ [1, 2]|map('string')|join(',') }} {{ ([3, 1]|reverse|list)[0] }} {{ {'a': 1}|items|list }}")

def main(argv):
    check = "--check" in argv
    if jinja2.__version__ != JINJA2_VERSION and "--any-version" not in argv:
        raise SystemExit(f"Jinja2 {jinja2.__version__} found; the fixture is for {JINJA2_VERSION} (--any-version to go on)")
    names = [c[0] for c in CASES]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise SystemExit(f"duplicate case names: {dup}")
    env = make_env()
    out = "".join(to_line(run_case(env, *c)) + "\n" for c in CASES)
    n_ok = sum(1 for line in out.splitlines() if json.loads(line)["ok"])
    summary = f"{len(CASES)} cases: {n_ok} ok, {len(CASES) - n_ok} errors (Jinja2 {jinja2.__version__})"
    if check:
        with open(FIXTURE, encoding="utf-8") as f:
            old = f.read()
        if old != out:
            old_lines, new_lines = old.splitlines(), out.splitlines()
            for i, (a, b) in enumerate(zip(old_lines, new_lines)):
                if a != b:
                    print(f"first difference at line {i + 1}:\n- {a}\n+ {b}")
                    break
            else:
                print(f"line count differs: {len(old_lines)} vs {len(new_lines)}")
            raise SystemExit(f"{FIXTURE} is out of date; {summary}")
        print(f"{FIXTURE} is up to date; {summary}")
        return
    with open(FIXTURE, "w", encoding="utf-8", newline="\n") as f:
        f.write(out)
    print(f"wrote {os.path.relpath(FIXTURE, ROOT)}: {summary}")


if __name__ == "__main__":
    main(sys.argv[1:])
