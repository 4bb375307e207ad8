-- case: create model with every kind of option value
CREATE OR REPLACE MODEL analytics.churn
OPTIONS (model_type = 'boosted_tree_classifier', input_label_cols = ['churned'],
         learn_rate = 0.1, max_iterations = 50, early_stop = FALSE, l1_reg = -0.0,
         data_split_eval_fraction = .25)
AS SELECT * FROM customer_features WHERE signup_date > DATE '2024-01-01';

-- case: if not exists, lower case, no options
create model if not exists m as select 1 as label, 2 as x;

-- case: the query is kept verbatim, DuckDB syntax sqlglot need not know
CREATE MODEL m OPTIONS (model_type='linear_reg') AS
  FROM tbl SELECT * EXCLUDE (id) REPLACE (x * 2 AS x) WHERE list_contains([1, 2], y)
  -- a trailing comment
;

-- case: drop
DROP MODEL m;

-- case: drop if exists, qualified, quoted
DROP MODEL IF EXISTS "My Schema"."My Model";

-- case: show models
SHOW MODELS;

-- case: describe model
DESCRIBE MODEL main.m;

-- case: describe of a table named model stays DuckDB's
DESCRIBE model;

-- case: ML calls inside a plain query, nested
WITH p AS (SELECT * FROM ML.PREDICT(MODEL m, (SELECT * FROM ML.PREDICT(MODEL n, TABLE t))))
SELECT * FROM p JOIN ML.EVALUATE(MODEL m) e ON true;

-- case: SHOW MODELS as a subquery
SELECT name FROM (SHOW MODELS) WHERE model_type = 'kmeans';

-- case: plain DuckDB mentioning models is left alone
SELECT model, ml.predict FROM cars AS ml WHERE model = 'T';

-- case: several statements in one script
CREATE TABLE t AS SELECT 1 AS a; CREATE MODEL m OPTIONS (model_type='kmeans') AS SELECT a FROM t; SELECT 42;

-- case: create model with TRANSFORM, kept as written
CREATE OR REPLACE MODEL m
TRANSFORM (ML.STANDARD_SCALER(x) OVER () AS x_scaled, ML.FEATURE_CROSS(STRUCT(a, b)) AS ab, label)
OPTIONS (model_type = 'linear_reg')
AS SELECT * FROM t;

-- case: export model
EXPORT MODEL analytics.m OPTIONS (uri = '/tmp/m.onnx');

-- case: ML functions with settings and extra arguments, in any order
SELECT * FROM ML.PREDICT(MODEL m, TABLE t, STRUCT(0.7 AS threshold, TRUE AS keep_original_columns));
SELECT * FROM ML.ROC_CURVE(MODEL m, (SELECT * FROM t), GENERATE_ARRAY(0.1, 0.9, 0.1));
SELECT * FROM ML.DETECT_ANOMALIES(MODEL m, STRUCT(0.02 AS contamination), TABLE t);
SELECT * FROM ML.EVALUATE(MODEL m, STRUCT(2 AS trial_id));

-- case: preprocessing functions in a plain query
SELECT ML.MIN_MAX_SCALER(x) OVER () AS x01, ML.BUCKETIZE(y, [1, 2, 3]) AS yb FROM t;

-- case: sqlml's own setting
SET sqlml_progress = false;

-- case: sqlml's setting with SESSION and TO
SET SESSION sqlml_progress TO 'on';

-- case: reset sqlml's setting
RESET sqlml_progress;
