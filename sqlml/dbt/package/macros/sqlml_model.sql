{#
  materialized='sqlml_model': the model's query trains a sqlml model named after the dbt
  model, through CREATE OR REPLACE MODEL <this> [TRANSFORM (<ml_transform>)]
  OPTIONS (<ml_options>) AS <query>. Each run trains a new version. The profile needs
  `plugins: [{module: sqlml.dbt}]`.
#}
{% materialization sqlml_model, adapter='duckdb' %}
  {%- set target_relation = this -%}
  {%- set create_sql = sqlml.create_model_sql(
        target_relation, config.get('ml_options'), sql, config.get('ml_transform')) -%}

  {{ run_hooks(pre_hooks, inside_transaction=False) }}
  {{ run_hooks(pre_hooks, inside_transaction=True) }}

  {% call statement('main') -%}
    {{ create_sql }}
  {%- endcall %}

  {{ run_hooks(post_hooks, inside_transaction=True) }}
  {{ adapter.commit() }}
  {{ run_hooks(post_hooks, inside_transaction=False) }}

  {{ return({'relations': [target_relation]}) }}
{% endmaterialization %}


{% macro create_model_sql(relation, ml_options, sql, ml_transform=none) -%}
  {%- if ml_options is none -%}
    {{ exceptions.raise_compiler_error(
        "Model " ~ relation ~ " is materialized='sqlml_model' but has no ml_options; set "
        ~ "config(ml_options={'model_type': 'logistic_reg', 'input_label_cols': ['label']})") }}
  {%- endif -%}
  {%- if ml_options is not mapping -%}
    {{ exceptions.raise_compiler_error(
        "ml_options of model " ~ relation ~ " must be a mapping of option names to values, "
        ~ "e.g. {'model_type': 'linear_reg'}; got " ~ ml_options) }}
  {%- endif -%}
  {#- model_type first, as people write it (dbt hands the config over with sorted keys) -#}
  {%- set keys = ml_options.keys() | sort -%}
  {%- set keys = (['model_type'] if 'model_type' in keys else [])
                 + (keys | reject('equalto', 'model_type') | list) -%}
  {%- set options = [] -%}
  {%- for key in keys -%}
    {%- if key is not string or not modules.re.fullmatch('[A-Za-z_][A-Za-z0-9_]*', key) -%}
      {{ exceptions.raise_compiler_error(
          "ml_options of model " ~ relation ~ ": " ~ key ~ " is not an option name") }}
    {%- endif -%}
    {%- do options.append(key ~ ' = ' ~ sqlml.option_value(relation, key, ml_options[key])) -%}
  {%- endfor -%}
create or replace model {{ relation }}
{{ sqlml.transform_clause(relation, ml_transform) -}}
options ({{ options | join(', ') }})
as
{{ sql }}
{%- endmacro %}


{#- ml_transform, a select list as one string or a list of its items: TRANSFORM (...). -#}
{% macro transform_clause(relation, ml_transform) -%}
  {%- if ml_transform is none -%}
  {%- elif ml_transform is string and ml_transform | trim -%}
transform ({{ ml_transform }})
  {% elif ml_transform is sequence and ml_transform is not mapping and ml_transform | length
        and ml_transform | select('string') | list | length == ml_transform | length -%}
transform ({{ ml_transform | join(', ') }})
  {% else -%}
    {{ exceptions.raise_compiler_error(
        "ml_transform of model " ~ relation ~ " is " ~ (ml_transform | string) ~ "; give the "
        ~ "TRANSFORM select list as a string or a list of its items, e.g. "
        ~ "['ML.STANDARD_SCALER(x) OVER () AS x', 'label']") }}
  {%- endif -%}
{%- endmacro %}


{#- An option value as SQL: 'text', 42, 0.5, TRUE, ['a', 'b'], and for tuning
    {'hparam_range': [low, high]} or {'hparam_candidates': [...]}. -#}
{% macro option_value(relation, key, value) -%}
  {%- if value is mapping -%}
    {%- set kinds = value.keys() | list -%}
    {%- set items = value[kinds[0]] if kinds | length == 1 else none -%}
    {%- if kinds == ['hparam_range'] and items is sequence and items is not string
          and items | length == 2 and items | select('number') | list | length == 2 -%}
      HPARAM_RANGE({{ items[0] }}, {{ items[1] }})
    {%- elif kinds == ['hparam_candidates'] and items is sequence and items is not string
          and items is not mapping -%}
      HPARAM_CANDIDATES({{ sqlml.option_value(relation, key, items) }})
    {%- else -%}
      {{ exceptions.raise_compiler_error(
          "ml_options of model " ~ relation ~ ": " ~ key ~ " is " ~ (value | string)
          ~ "; a mapping must be {'hparam_range': [low, high]} or "
          ~ "{'hparam_candidates': [value, ...]}") }}
    {%- endif -%}
  {%- elif value is boolean -%}
    {{- 'TRUE' if value else 'FALSE' -}}
  {%- elif value is number -%}
    {{- value -}}
  {%- elif value is string -%}
    '{{- value | replace("'", "''") -}}'
  {%- elif value is sequence and value is not mapping -%}
    {%- set items = [] -%}
    {%- for item in value -%}
      {%- if item is sequence and item is not string -%}
        {{ exceptions.raise_compiler_error(
            "ml_options of model " ~ relation ~ ": " ~ key ~ " is a list of lists; its "
            ~ "items must be strings, numbers or booleans") }}
      {%- endif -%}
      {%- do items.append(sqlml.option_value(relation, key, item)) -%}
    {%- endfor -%}
    [{{ items | join(', ') }}]
  {%- else -%}
    {{ exceptions.raise_compiler_error(
        "ml_options of model " ~ relation ~ ": " ~ key ~ " is " ~ (value | string)
        ~ "; give a string, number, boolean or list of them (or leave the option out)") }}
  {%- endif -%}
{%- endmacro %}
