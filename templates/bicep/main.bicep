// EMRsim on Azure: App Service (with a staging slot), PostgreSQL Flexible Server,
// Storage for backups, Log Analytics + Application Insights alerts, Key Vault.
// Parameters come from environments/<env>.toml, rendered by `emrops provision render`.
targetScope = 'resourceGroup'

@description('Environment name, used in resource names and tags.')
@allowed([
  'staging'
  'production'
])
param environmentName string

@description('Azure region for every resource.')
param location string = resourceGroup().location

@description('Short prefix for resource names (letters and digits).')
@minLength(3)
@maxLength(12)
param namePrefix string = 'emrsim'

@description('App Service plan SKU; slots need Standard (S1) or higher.')
param appServiceSku string = 'S1'

@description('Number of App Service instances (health check needs two or more).')
@minValue(1)
@maxValue(10)
param appInstanceCount int = 2

@description('PostgreSQL major version.')
param postgresVersion string = '16'

@description('PostgreSQL compute SKU name, e.g. Standard_B1ms or Standard_D2ds_v5.')
param postgresSkuName string = 'Standard_B1ms'

@description('PostgreSQL compute tier: Burstable, GeneralPurpose or MemoryOptimized.')
param postgresSkuTier string = 'Burstable'

@description('PostgreSQL storage size in GiB.')
@minValue(32)
param postgresStorageGb int = 32

@description('PostgreSQL backup retention in days.')
@minValue(7)
@maxValue(35)
param postgresBackupRetentionDays int = 7

@description('Geo-redundant PostgreSQL backups (production).')
param postgresGeoRedundantBackup bool = false

@description('PostgreSQL administrator login name.')
param postgresAdminLogin string = 'emrsimadmin'

@description('PostgreSQL administrator password: from the environment or a Key Vault reference, never a file.')
@secure()
param postgresAdminPassword string

@description('Key used to encrypt backups: from the environment or a Key Vault reference, never a file.')
@secure()
param backupEncryptionKey string

@description('Client IP ranges allowed through the PostgreSQL firewall (besides Azure services).')
param postgresAllowedIpRanges array = []

@description('Days before backups move to the cool tier.')
param backupCoolAfterDays int = 30

@description('Days before backups are deleted.')
param backupDeleteAfterDays int = 365

@description('E-mail address that receives alerts.')
param alertEmail string

@description('Minutes without a backup heartbeat before the backup alert fires.')
param backupHeartbeatMinutes int = 1500

@description('Tags added to every resource.')
param extraTags object = {}

var tags = union(extraTags, {
  application: 'emrsim'
  environment: environmentName
  'managed-by': 'emrops'
})
var suffix = uniqueString(resourceGroup().id)

module monitor 'modules/monitor.bicep' = {
  name: 'monitor'
  params: {
    location: location
    tags: tags
    baseName: '${namePrefix}-${environmentName}-${suffix}'
    alertEmail: alertEmail
    backupHeartbeatMinutes: backupHeartbeatMinutes
  }
}

module storage 'modules/storage.bicep' = {
  name: 'storage'
  params: {
    location: location
    tags: tags
    accountName: take('${namePrefix}${suffix}', 24)
    coolAfterDays: backupCoolAfterDays
    deleteAfterDays: backupDeleteAfterDays
    logAnalyticsWorkspaceId: monitor.outputs.workspaceId
  }
}

module postgres 'modules/postgres.bicep' = {
  name: 'postgres'
  params: {
    location: location
    tags: tags
    serverName: '${namePrefix}-${environmentName}-pg-${suffix}'
    version: postgresVersion
    skuName: postgresSkuName
    skuTier: postgresSkuTier
    storageGb: postgresStorageGb
    backupRetentionDays: postgresBackupRetentionDays
    geoRedundantBackup: postgresGeoRedundantBackup
    adminLogin: postgresAdminLogin
    adminPassword: postgresAdminPassword
    allowedIpRanges: postgresAllowedIpRanges
  }
}

module keyVault 'modules/keyvault.bicep' = {
  name: 'keyvault'
  params: {
    location: location
    tags: tags
    vaultName: take('${namePrefix}-kv-${suffix}', 24)
    databasePassword: postgresAdminPassword
    backupEncryptionKey: backupEncryptionKey
    logAnalyticsWorkspaceId: monitor.outputs.workspaceId
  }
}

module app 'modules/app.bicep' = {
  name: 'app'
  params: {
    location: location
    tags: tags
    planName: '${namePrefix}-${environmentName}-plan-${suffix}'
    siteName: '${namePrefix}-${environmentName}-${suffix}'
    skuName: appServiceSku
    instanceCount: appInstanceCount
    appInsightsConnectionString: monitor.outputs.appInsightsConnectionString
    keyVaultName: keyVault.outputs.vaultName
    databaseHost: postgres.outputs.fullyQualifiedDomainName
    databaseUser: postgresAdminLogin
    storageAccountName: storage.outputs.accountName
  }
}

module appAlerts 'modules/alerts.bicep' = {
  name: 'alerts'
  params: {
    tags: tags
    baseName: '${namePrefix}-${environmentName}'
    siteId: app.outputs.siteId
    appInsightsId: monitor.outputs.appInsightsId
    actionGroupId: monitor.outputs.actionGroupId
  }
}

@description('Public host name of the production slot.')
output appHostName string = app.outputs.defaultHostName

@description('Public host name of the staging slot.')
output stagingHostName string = app.outputs.stagingHostName

@description('Name of the Web App (for `emrops deploy`).')
output siteName string = app.outputs.siteName

@description('PostgreSQL server host name (no credentials).')
output postgresHost string = postgres.outputs.fullyQualifiedDomainName

@description('Storage account that holds the backups container.')
output backupStorageAccount string = storage.outputs.accountName

@description('Key Vault holding the database password and the backup key.')
output keyVaultName string = keyVault.outputs.vaultName
