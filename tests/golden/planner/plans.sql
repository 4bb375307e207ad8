-- case: linear_reg, defaults filled in, label named label by default
CREATE MODEL m OPTIONS (model_type = 'LINEAR_REG') AS
SELECT i AS label, ti, bi, dec, f, d, v, b, e, dt, ts, tz FROM every_type;

-- case: logistic_reg with a BOOLEAN label and options given
CREATE OR REPLACE MODEL analytics.m
OPTIONS (model_type = 'logistic_reg', input_label_cols = 'B', l2_reg = 1, max_iterations = 30,
         data_split_method = 'RANDOM', data_split_eval_fraction = 0.1, random_seed = 3)
AS SELECT b, d, v FROM every_type;

-- case: classifier with an ENUM label predicts VARCHAR
CREATE MODEL m OPTIONS (model_type = 'random_forest_classifier', input_label_cols = ['e'],
                        num_parallel_tree = 10)
AS SELECT e, d FROM every_type;

-- case: boosted tree regressor
CREATE MODEL m OPTIONS (model_type = 'boosted_tree_regressor', input_label_cols = ['body_mass_g'],
                        subsample = 0.5, tree_method = 'exact')
AS SELECT * FROM penguins;

-- case: kmeans takes every column as a feature
CREATE MODEL IF NOT EXISTS m OPTIONS (model_type = 'kmeans', num_clusters = 4,
                                      standardize_features = false)
AS SELECT bill_length_mm, island FROM penguins;

-- case: no model_type
CREATE MODEL m OPTIONS (input_label_cols = ['i']) AS SELECT * FROM every_type;

-- case: unknown model_type
CREATE MODEL m OPTIONS (model_type = 'xgboost') AS SELECT * FROM every_type;

-- case: unknown option
CREATE MODEL m OPTIONS (model_type = 'linear_reg', learning_rate = 0.1) AS SELECT i AS label, d FROM every_type;

-- case: known BigQuery option sqlml cannot honour
CREATE MODEL m OPTIONS (model_type = 'random_forest_regressor', learn_rate = 0.1) AS SELECT i AS label, d FROM every_type;

-- case: wrong value type
CREATE MODEL m OPTIONS (model_type = 'linear_reg', l2_reg = 'lots') AS SELECT i AS label, d FROM every_type;

-- case: value out of range
CREATE MODEL m OPTIONS (model_type = 'linear_reg', data_split_eval_fraction = 1.5) AS SELECT i AS label, d FROM every_type;

-- case: value not in the choices
CREATE MODEL m OPTIONS (model_type = 'linear_reg', data_split_method = 'seqential') AS SELECT i AS label, d FROM every_type;

-- case: integer option given a fraction
CREATE MODEL m OPTIONS (model_type = 'boosted_tree_regressor', max_iterations = 2.5) AS SELECT i AS label, d FROM every_type;

-- case: option given twice
CREATE MODEL m OPTIONS (model_type = 'linear_reg', l2_reg = 1, L2_REG = 2) AS SELECT i AS label, d FROM every_type;

-- case: option value that is not a literal
CREATE MODEL m OPTIONS (model_type = 'linear_reg', l2_reg = random()) AS SELECT i AS label, d FROM every_type;

-- case: label column missing
CREATE MODEL m OPTIONS (model_type = 'linear_reg', input_label_cols = ['price']) AS SELECT i, d FROM every_type;

-- case: default label missing
CREATE MODEL m OPTIONS (model_type = 'linear_reg') AS SELECT i, d FROM every_type;

-- case: two labels
CREATE MODEL m OPTIONS (model_type = 'linear_reg', input_label_cols = ['i', 'd']) AS SELECT i, d, f FROM every_type;

-- case: text label for a regression
CREATE MODEL m OPTIONS (model_type = 'linear_reg', input_label_cols = ['v']) AS SELECT v, d FROM every_type;

-- case: float label for a classifier
CREATE MODEL m OPTIONS (model_type = 'logistic_reg', input_label_cols = ['d']) AS SELECT v, d FROM every_type;

-- case: kmeans with a label
CREATE MODEL m OPTIONS (model_type = 'kmeans', input_label_cols = ['d']) AS SELECT v, d FROM every_type;

-- case: LIST feature
CREATE MODEL m OPTIONS (model_type = 'linear_reg') AS SELECT i AS label, l FROM every_type;

-- case: STRUCT feature
CREATE MODEL m OPTIONS (model_type = 'linear_reg') AS SELECT i AS label, s FROM every_type;

-- case: BLOB feature
CREATE MODEL m OPTIONS (model_type = 'linear_reg') AS SELECT i AS label, blob FROM every_type;

-- case: INTERVAL feature
CREATE MODEL m OPTIONS (model_type = 'linear_reg') AS SELECT i AS label, iv FROM every_type;

-- case: only a label
CREATE MODEL m OPTIONS (model_type = 'linear_reg') AS SELECT i AS label FROM every_type;

-- case: duplicate column names
CREATE MODEL m OPTIONS (model_type = 'linear_reg') AS SELECT i AS label, d, d FROM every_type;

-- case: failing feature query
CREATE MODEL m OPTIONS (model_type = 'linear_reg') AS SELECT * FROM no_such_table;

-- case: the training query is not a query
CREATE MODEL m OPTIONS (model_type = 'linear_reg') AS CREATE TABLE x AS SELECT 1 AS label;

-- case: num_parallel_tree > 1 for boosted trees is refused at training
CREATE MODEL m OPTIONS (model_type = 'boosted_tree_classifier', num_parallel_tree = 4, input_label_cols = ['b']) AS SELECT b, d FROM every_type;

-- case: ML.PREDICT inside the training query is expanded
CREATE MODEL m2 OPTIONS (model_type = 'linear_reg', input_label_cols = ['body_mass_g'])
AS SELECT body_mass_g, predicted_body_mass_g FROM ML.PREDICT(MODEL mass, TABLE penguins);

-- case: TRANSFORM fitted: scalers become constants, inputs are what the TRANSFORM reads
CREATE MODEL m TRANSFORM (ML.STANDARD_SCALER(flipper_length_mm) OVER () AS flipper,
    ML.MIN_MAX_SCALER(bill_length_mm) OVER () AS bill, species, body_mass_g)
OPTIONS (model_type = 'linear_reg', input_label_cols = ['body_mass_g'])
AS SELECT * FROM penguins;

-- case: TRANSFORM without the label
CREATE MODEL m TRANSFORM (flipper_length_mm * 2 AS f2)
OPTIONS (model_type = 'linear_reg', input_label_cols = ['body_mass_g'])
AS SELECT * FROM penguins;

-- case: custom split: the split column is read but never a feature
CREATE MODEL m OPTIONS (model_type = 'linear_reg', input_label_cols = ['body_mass_g'],
    data_split_method = 'custom', data_split_col = 'is_eval')
AS SELECT body_mass_g, flipper_length_mm, year = 2009 AS is_eval FROM penguins;

-- case: custom split on a column that is not BOOLEAN
CREATE MODEL m OPTIONS (model_type = 'linear_reg', input_label_cols = ['body_mass_g'],
    data_split_method = 'custom', data_split_col = 'year')
AS SELECT body_mass_g, flipper_length_mm, year FROM penguins;

-- case: seq split needs data_split_col
CREATE MODEL m OPTIONS (model_type = 'linear_reg', input_label_cols = ['body_mass_g'],
    data_split_method = 'seq')
AS SELECT body_mass_g, flipper_length_mm, year FROM penguins;

-- case: tuning: ranges and candidates
CREATE MODEL m OPTIONS (model_type = 'boosted_tree_regressor', input_label_cols = ['body_mass_g'],
    num_trials = 8, max_tree_depth = HPARAM_RANGE(2, 8), learn_rate = HPARAM_CANDIDATES([0.05, 0.1, 0.3]))
AS SELECT body_mass_g, flipper_length_mm, species FROM penguins;

-- case: a range without num_trials
CREATE MODEL m OPTIONS (model_type = 'boosted_tree_regressor', input_label_cols = ['body_mass_g'],
    max_tree_depth = HPARAM_RANGE(2, 8))
AS SELECT body_mass_g, flipper_length_mm FROM penguins;

-- case: class_weights names a class the label does not have
CREATE MODEL m OPTIONS (model_type = 'logistic_reg', input_label_cols = ['species'],
    class_weights = [STRUCT('Adelie', 1.0), STRUCT('Dodo', 3.0)])
AS SELECT species, flipper_length_mm FROM penguins;

-- case: dnn_classifier with hidden_units
CREATE MODEL m OPTIONS (model_type = 'dnn_classifier', input_label_cols = ['species'],
    hidden_units = [16, 8], activation_fn = 'relu', dropout = 0.1)
AS SELECT species, flipper_length_mm, bill_length_mm FROM penguins;

-- case: pca without a component count
CREATE MODEL m OPTIONS (model_type = 'pca') AS SELECT flipper_length_mm, bill_length_mm FROM penguins;

-- case: import without model_path
CREATE MODEL m OPTIONS (model_type = 'onnx');

-- case: import with a training query
CREATE MODEL m OPTIONS (model_type = 'onnx', model_path = 'm.onnx') AS SELECT 1 AS x;

-- case: import of a file that does not exist
CREATE MODEL m OPTIONS (model_type = 'onnx', model_path = 'no/such/file.onnx');
