-- Which species is it? A quarter of the rows is held out for evaluation.
CREATE OR REPLACE MODEL penguin_species
OPTIONS (model_type = 'logistic_reg', input_label_cols = ['species'], l2_reg = 0.1,
         data_split_method = 'random', data_split_eval_fraction = 0.25)
AS SELECT * EXCLUDE (penguin_id) FROM penguin_features;
