-- The sqlml demo: Palmer penguins (Gorman, Williams & Fraser 2014, CC0), as shipped by the
-- palmerpenguins package. Run from the repository root: make demo

CREATE OR REPLACE TABLE penguins AS
SELECT * FROM read_csv('sql/seeds/penguins.csv', nullstr = 'NA');

-- Which species is it? A quarter of the rows is held out for evaluation.
CREATE OR REPLACE MODEL penguin_species
OPTIONS (model_type = 'logistic_reg', input_label_cols = ['species'], l2_reg = 0.1,
         data_split_method = 'random', data_split_eval_fraction = 0.25)
AS SELECT species, island, bill_length_mm, bill_depth_mm, flipper_length_mm, body_mass_g, sex
   FROM penguins;

-- How heavy is it?
CREATE OR REPLACE MODEL penguin_mass
OPTIONS (model_type = 'boosted_tree_regressor', input_label_cols = ['body_mass_g'],
         max_iterations = 50, learn_rate = 0.1,
         data_split_method = 'random', data_split_eval_fraction = 0.25)
AS SELECT * FROM penguins WHERE body_mass_g IS NOT NULL;

-- Which penguins are alike?
CREATE OR REPLACE MODEL penguin_groups
OPTIONS (model_type = 'kmeans', num_clusters = 3)
AS SELECT bill_length_mm, bill_depth_mm, flipper_length_mm, body_mass_g FROM penguins;

SHOW MODELS;

SELECT 'penguin_species' AS model, * FROM ML.EVALUATE(MODEL penguin_species);
SELECT 'penguin_mass' AS model, * FROM ML.EVALUATE(MODEL penguin_mass);
SELECT 'penguin_groups' AS model, * FROM ML.EVALUATE(MODEL penguin_groups);

-- The models are SQL functions too.
SELECT species, penguin_groups(p) AS cluster, count(*) AS penguins
FROM penguins p GROUP BY ALL ORDER BY ALL;
