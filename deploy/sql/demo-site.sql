-- Demo site database for deploy/compose.yaml: the lab tables a hospital already has, with a few
-- orders. Run by the site-*-db-init services (sqlcmd -v SITE=101); idempotent.
IF DB_ID('lab') IS NULL CREATE DATABASE lab;
GO
USE lab;
GO
IF OBJECT_ID('dbo.lab_orders') IS NULL
BEGIN
  CREATE TABLE dbo.lab_orders (
    order_id INT NOT NULL PRIMARY KEY, patient_id NVARCHAR(20) NOT NULL, patient_name NVARCHAR(80),
    ordered_at NVARCHAR(30), ward NVARCHAR(40), priority NVARCHAR(10), status NVARCHAR(20),
    physician NVARCHAR(80), notes NVARCHAR(400), internal_note NVARCHAR(200));
  CREATE TABLE dbo.lab_results (
    result_id INT NOT NULL PRIMARY KEY, order_id INT NOT NULL, test_code NVARCHAR(10),
    test_name NVARCHAR(60), value NVARCHAR(20), unit NVARCHAR(20), ref_range NVARCHAR(20), flag NVARCHAR(2));
  CREATE INDEX ix_lab_results_order ON dbo.lab_results (order_id);
  -- 200 orders with 5 results each, numbered per site so sites never collide centrally.
  WITH n AS (SELECT TOP (200) ROW_NUMBER() OVER (ORDER BY (SELECT NULL)) AS i FROM sys.all_objects)
  INSERT INTO dbo.lab_orders (order_id, patient_id, patient_name, ordered_at, ward, priority, status, physician, notes)
  SELECT $(SITE) * 100000 + i, CONCAT('P', $(SITE), '-', i), CONCAT('Paciente ', i), '2026-11-25T08:00:00Z',
         'Guardia', 'routine', 'final', 'Dra. Gómez', 'demo order'
  FROM n;
  INSERT INTO dbo.lab_results (result_id, order_id, test_code, test_name, value, unit, ref_range, flag)
  SELECT o.order_id * 10 + t.k, o.order_id, t.code, t.name, CAST(90 + t.k AS NVARCHAR(20)), t.unit, t.ref, 'N'
  FROM dbo.lab_orders o
  CROSS JOIN (VALUES (1, 'GLU', 'Glucose', 'mg/dL', '70-110'), (2, 'HB', 'Hemoglobin', 'g/dL', '12-16'),
                     (3, 'WBC', 'White blood cells', '10^3/uL', '4.5-11'), (4, 'PLT', 'Platelets', '10^3/uL', '150-400'),
                     (5, 'CRE', 'Creatinine', 'mg/dL', '0.6-1.2')) AS t(k, code, name, unit, ref);
END;
GO
