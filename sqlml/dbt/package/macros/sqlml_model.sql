{#
  materialized='sqlml_model': the model's query trains a sqlml model named after the dbt
  model, through CREATE OR REPLACE MODEL <this> OPTIONS (<ml_options>) AS <query>.
  Each run trains a new version. The profile needs `plugins: [{module: sqlml.dbt}]`.
#}
{% materialization sqlml_model, adapter='duckdb' %}
  {%- set target_relation = this -%}
  {%- set create_sql = sqlml.create_model_sql(target_relation, config.get('ml_options'), sql) -%}

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


{% macro create_model_sql(relation, ml_options, sql) -%}
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
options ({{ options | join(', ') }})
as
{{ sql }}
{%- endmacro %}


{#- An option value as SQL: 'text', 42, 0.5, TRUE, ['a', 'b']. -#}
{% macro option_value(relation, key, value) -%}
  {%- if value is boolean -%}
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
