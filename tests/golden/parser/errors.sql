-- case: OPTIONS never closed
CREATE MODEL m OPTIONS (model_type = 'linear_reg' AS SELECT 1;

-- case: no query after AS
CREATE MODEL m OPTIONS (model_type = 'linear_reg') AS;

-- case: no model name
CREATE MODEL OPTIONS (model_type = 'linear_reg') AS SELECT 1;

-- case: option without a value
CREATE MODEL m OPTIONS (model_type = ) AS SELECT 1;

-- case: option without =
CREATE MODEL m OPTIONS (model_type 'linear_reg') AS SELECT 1;

-- case: missing AS
CREATE MODEL m OPTIONS (model_type = 'linear_reg') SELECT 1;

-- case: four-part model name
CREATE MODEL x.db.s.m OPTIONS (model_type = 'linear_reg') AS SELECT 1;

-- case: drop without a name
DROP MODEL;

-- case: something after DROP MODEL name
DROP MODEL m CASCADE;

-- case: ML.PREDICT without MODEL
SELECT * FROM ML.PREDICT(m, TABLE t);

-- case: ML.PREDICT with a bad second argument
SELECT * FROM ML.PREDICT(MODEL m, 42);

-- case: unknown ML function, on the second line
SELECT *
FROM ML.FORECASTX(MODEL m);

-- case: unbalanced parentheses inside ML.PREDICT
SELECT * FROM ML.PREDICT(MODEL m, (SELECT 1);

-- case: two inputs
SELECT * FROM ML.PREDICT(MODEL m, TABLE t, TABLE u);

-- case: unterminated string in an ML statement
CREATE MODEL m OPTIONS (model_type = 'linear_reg) AS SELECT 1;

-- case: export model with something after it
EXPORT MODEL m OPTIONS (uri = 'm.onnx') now;

-- case: preprocessing OVER with a window
SELECT ML.STANDARD_SCALER(x) OVER (PARTITION BY y) FROM t;

-- case: TRANSFORM without parentheses
CREATE MODEL m TRANSFORM x OPTIONS (model_type = 'linear_reg') AS SELECT 1;

-- case: sqlml setting without a value
SET sqlml_progress;

-- case: sqlml setting with two values
SET sqlml_progress = false true;

-- case: OR REPLACE with IF NOT EXISTS
CREATE OR REPLACE MODEL IF NOT EXISTS m OPTIONS (model_type = 'linear_reg') AS SELECT 1;

-- case: a trained model without AS query
CREATE MODEL m OPTIONS (model_type = 'linear_reg');

-- case: ML.PREDICT with MODEL but no model name
SELECT * FROM ML.PREDICT(MODEL, TABLE penguins);

-- case: ML.EVALUATE with MODEL alone
SELECT * FROM ML.EVALUATE(MODEL);
