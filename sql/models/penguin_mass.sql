-- How heavy is it?
CREATE OR REPLACE MODEL penguin_mass
OPTIONS (model_type = 'boosted_tree_regressor', input_label_cols = ['body_mass_g'],
         max_iterations = 50, learn_rate = 0.1,
         data_split_method = 'random', data_split_eval_fraction = 0.25)
AS SELECT species, island, sex, bill_length_mm, bill_depth_mm, flipper_length_mm, body_mass_g
   FROM penguin_features;
