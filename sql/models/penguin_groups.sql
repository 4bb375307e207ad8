-- Which penguins are alike, whatever their species?
CREATE OR REPLACE MODEL penguin_groups
OPTIONS (model_type = 'kmeans', num_clusters = 3)
AS SELECT bill_length_mm, bill_depth_mm, flipper_length_mm, body_mass_g FROM penguin_features;
